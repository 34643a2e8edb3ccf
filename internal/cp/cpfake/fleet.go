package cpfake

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// Paging bounds of the list endpoint.
const (
	defaultPage = 100
	maxPage     = 1000
)

var errBadCursor = errors.New("invalid cursor")

// insertLocked adds an instance. Appending keeps f.sorted ordered in the
// common case (launches happen in clock order); an out-of-order seed only
// marks it dirty, and the next reader sorts once, not once per page.
func (f *Fake) insertLocked(ws, state string, launchedAt time.Time) *instance {
	return f.insertIDLocked(f.newIDLocked(), ws, state, launchedAt)
}

// insertIDLocked is insertLocked with the instance id chosen by the
// caller, who has checked it is free.
func (f *Fake) insertIDLocked(id, ws, state string, launchedAt time.Time) *instance {
	f.nextIP++
	in := &instance{id: id, ws: ws, state: state, launched: launchedAt.UnixNano(), ip: f.nextIP}
	in.since = in.launched
	f.byID[in.id] = in
	f.byWS[ws] = append(f.byWS[ws], in)
	if n := len(f.sorted); n > 0 && compareInst(in, f.sorted[n-1]) < 0 {
		f.dirty = true
	}
	f.sorted = append(f.sorted, in)
	return in
}

// newIDLocked mints "i-" + 17 random hex digits, unique in this Fake.
func (f *Fake) newIDLocked() string {
	for {
		id := fmt.Sprintf("i-%x%016x", rand.IntN(16), rand.Uint64())
		if _, taken := f.byID[id]; !taken {
			return id
		}
	}
}

func compareInst(a, b *instance) int {
	if c := cmp.Compare(a.launched, b.launched); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

func (f *Fake) sortLocked() {
	if f.dirty {
		slices.SortFunc(f.sorted, compareInst)
		f.dirty = false
	}
}

// settle applies the lifecycle transitions that are due at now and
// returns the effective state.
func (f *Fake) settle(in *instance, now int64) string {
	switch in.state {
	case StatePending:
		if boot := int64(f.opts.BootTime); now-in.launched >= boot {
			in.state, in.since = StateRunning, in.launched+boot
		}
	case StateShuttingDown:
		if down := int64(f.opts.ShutdownTime); now-in.since >= down {
			in.state, in.since = StateTerminated, in.since+down
		}
	}
	return in.state
}

func (f *Fake) viewLocked(in *instance, now time.Time) cp.Instance {
	return cp.Instance{
		WorkspaceID: in.ws,
		InstanceID:  in.id,
		State:       f.settle(in, now.UnixNano()),
		PrivateIP:   fmt.Sprintf("10.%d.%d.%d", byte(in.ip>>16), byte(in.ip>>8), byte(in.ip)),
		LaunchedAt:  time.Unix(0, in.launched).UTC(),
	}
}

// launchLocked starts an instance for ws and records whether the workspace
// already had a live one: that is the duplicate the worker must prevent (or
// the sweep must clean up).
func (f *Fake) launchLocked(ws string) *instance {
	now := f.now()
	liveBefore := 0
	for _, other := range f.byWS[ws] {
		if live(f.settle(other, now.UnixNano())) {
			liveBefore++
		}
	}
	in := f.insertLocked(ws, StatePending, now)
	f.stats.Launched++
	if liveBefore > 0 {
		f.stats.Duplicates++
	}
	f.stats.MaxLiveForWorkspace = max(f.stats.MaxLiveForWorkspace, liveBefore+1)
	return in
}

// terminateLocked starts the shutdown of a live instance; repeating it is a
// no-op, as with EC2.
func (f *Fake) terminateLocked(in *instance) {
	now := f.now().UnixNano()
	if !live(f.settle(in, now)) {
		return
	}
	in.state, in.since = StateShuttingDown, now
	f.settle(in, now) // ShutdownTime 0: terminated at once
}

// pageLocked returns up to limit instances that are not terminated, after
// cursor, ordered by (launched_at, id), and the cursor of the next page.
// The cursor names the last item's sort key, so instances launched while a
// client pages do not shift it.
func (f *Fake) pageLocked(ws, cursor string, limit int) ([]cp.Instance, string, error) {
	src := f.sorted
	if ws != "" {
		src = slices.SortedFunc(slices.Values(f.byWS[ws]), compareInst)
	} else {
		f.sortLocked()
	}
	start := 0
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		start = sort.Search(len(src), func(i int) bool { return compareInst(src[i], after) > 0 })
	}
	now := f.now()
	var out []cp.Instance
	for i := start; i < len(src); i++ {
		if f.settle(src[i], now.UnixNano()) == StateTerminated {
			continue
		}
		if len(out) == limit {
			return out, encodeCursor(src[i-1]), nil
		}
		out = append(out, f.viewLocked(src[i], now))
	}
	return out, "", nil
}

// encodeCursor names the last item returned; src[i-1] above may be a
// terminated instance skipped after the last returned one, which is fine:
// the next page starts after it either way.
func encodeCursor(in *instance) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(in.launched, 10) + ":" + in.id))
}

func decodeCursor(s string) (*instance, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	ts, id, ok := strings.Cut(string(raw), ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return nil, errBadCursor
	}
	return &instance{launched: n, id: id}, nil
}
