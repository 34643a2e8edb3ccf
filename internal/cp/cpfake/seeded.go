package cpfake

import (
	"fmt"
	"time"
)

// FleetMember is member i of the seeded fleet seed: a workspace id (a
// version 4 UUID) and an instance id, both derived from (seed, i) alone.
// A process that asked a fake in another process (cmd/cpsim --fleet) for
// a fleet writes the matching database rows from it without a million
// ids crossing the wire, and the bench's heap holds no copy of the fleet.
//
// The ids look random, as real ones do: in list order (launch time, then
// instance id) the workspace ids are in no index's order. Instance ids of
// one seed never repeat: their low 64 bits are a bijection of i.
func FleetMember(seed uint64, i int) (workspaceID, instanceID string) {
	x := seed + uint64(i)*0x9e3779b97f4a7c15 // distinct for distinct i (odd multiplier)
	inst := mix64(x)
	hi, lo := mix64(x^0x5851f42d4c957f2d), mix64(x^0x14057b7ef767814f)
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	workspaceID = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
	return workspaceID, fmt.Sprintf("i-%x%016x", mix64(x^0xd1b54a32d192ed03)&0xf, inst)
}

// mix64 is splitmix64's finalizer, a bijection on uint64.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// SeedFleet adds members 0..n-1 of fleet seed (FleetMember), in state,
// launched at launchedAt. Like AddInstance it counts no launch. It adds
// nothing and fails if any of their instance ids is taken (the same
// seed twice).
func (f *Fake) SeedFleet(seed uint64, n int, state string, launchedAt time.Time) error {
	if n < 0 {
		return fmt.Errorf("cpfake: fleet size %d", n)
	}
	type member struct{ ws, inst string }
	members := make([]member, n)
	for i := range members {
		members[i].ws, members[i].inst = FleetMember(seed, i)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range members {
		if _, taken := f.byID[m.inst]; taken {
			return fmt.Errorf("cpfake: fleet %d: instance id %s is taken", seed, m.inst)
		}
	}
	now := f.now().UnixNano()
	for _, m := range members {
		in := f.insertIDLocked(m.inst, m.ws, state, launchedAt)
		if state == StateShuttingDown {
			in.since = now
		}
	}
	// Sorted now, not by the first list request: a bench timing a sweep
	// of a million seeded instances timed this sort with it.
	f.sortLocked()
	return nil
}
