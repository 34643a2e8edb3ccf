package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/sweep"
)

// TestChaos_SweepCollectsWhatAnIdempotencyBlindCPLeaks runs the chaos
// mode the sweep exists for: a CP that ignores Idempotency-Key and loses
// answers after acting, workers killed mid-call, and instances launched for
// requests whose answers never reached the database at all (seeded strays,
// some for workspaces that exist, some for none). Whatever the workers
// leave behind, one forced sweep with a short grace period must bring the
// fleet to leaked=0.
func TestChaos_SweepCollectsWhatAnIdempotencyBlindCPLeaks(t *testing.T) {
	n := max(*chaosN/2, 50)
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("chaos-sweep: seed=%d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 13))
	// The fake's clock runs an hour behind, so every instance it launched
	// is past the grace period by the time the sweep looks.
	w := newWorld(t, cpfake.Options{
		IgnoreIdempotency: true,
		Faults:            cpfake.Faults{LostAnswer: 0.2, Error5xx: 0.05, Reset: 0.02},
		Seed:              seed,
		Now:               func() time.Time { return time.Now().Add(-time.Hour) },
	}, map[string]string{
		"SWEEP_ENABLED": "true", "SWEEP_INTERVAL": "1h", "SWEEP_GRACE": "10s",
		"SWEEP_MAX_TERMINATIONS": "100000",
		// The sweep's timeout is derived below half of RESCUE_AFTER; the
		// harness's 4 s left it 2 s, which one forced sweep of the whole
		// fleet overran on a loaded machine and left two strays for the
		// next one.
		"RESCUE_AFTER": "12s",
	})
	procs := make([]*workerProc, 3)
	for i := range procs {
		procs[i] = w.startWorker(fmt.Sprintf("sweep-w%d", i))
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	stop := make(chan struct{})
	killed := make(chan int, 1)
	go func() { killed <- killer(w, procs, 5, rng.Int64(), stop).total() }()
	w.enqueueAll("provision", ids, 6)
	w.enqueueAll("terminate", ids, 6)
	kills := <-killed
	close(stop)
	_, err := w.drain(drainLimit(t, n))
	require.NoError(t, err)

	strays := seedStrays(w, ids, rng)
	before := w.account(ids)
	require.GreaterOrEqual(t, before.leaked, strays, "the seeded strays must be visible before the sweep")

	sweepOut := w.sweep(t)
	_, err = w.drain(drainLimit(t, n))
	require.NoError(t, err)
	after := w.account(ids)
	line := fmt.Sprintf("chaos-sweep: workspaces=%d kills=%d cp_faults=%d strays_seeded=%d leaked_before_sweep=%d leaked=%d duplicates=%d lost=%d",
		n, kills, w.cp.Stats().FaultsInjected, strays, before.leaked, after.leaked, after.duplicates, after.lost)
	t.Log(line)
	fmt.Println(line)
	if !after.clean() && after.leaked+after.lost+after.discarded > 0 {
		t.Logf("sweep result: %s", sweepOut)
		after.explain(t)
	}
	require.Zero(t, after.leaked, "instances still live after the sweep")
	require.Zero(t, after.lost)
	require.Zero(t, after.discarded)
}

// seedStrays launches instances the database never heard of: for
// workspaces that exist (a duplicate whose answer was lost) and for none
// (a handler that crashed before committing).
func seedStrays(w *world, ids []string, rng *rand.Rand) int {
	old := time.Now().Add(-2 * time.Hour)
	for range 5 {
		w.cp.AddInstance(ids[rng.IntN(len(ids))], cpfake.StateRunning, old)
		w.cp.AddInstance(uuid.NewString(), cpfake.StateRunning, old)
	}
	return 10
}

// sweep runs one forced sweep through the enqueue binary, waits for it,
// and returns its printed result. Forced, because after a drain every
// live instance is a stray and the breaker (rightly) refuses to act on a
// fleet that is all strays. A sweep that found another one holding the
// lock did nothing: a worker that became leader after the drain runs the
// periodic sweep on start (unforced, so it refuses the all-stray fleet),
// and the forced one is asked again, as an operator would.
func (w *world) sweep(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for attempt := 1; ; attempt++ {
		cmd := exec.CommandContext(ctx, w.enqueue, "sweep", "--force", "--wait", "--wait-timeout", "90s")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + w.dbURL}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		require.NoError(t, cmd.Run(), "enqueue sweep: %s", errb.String())
		var res sweep.Result
		require.NoError(t, json.Unmarshal(out.Bytes(), &res), "enqueue sweep printed %q", out.String())
		// Asked again, as an operator would, when it did nothing: skipped
		// for another sweep's lock, or its CP list failed (the fake injects
		// 5xx into every call, the list's too, and a sweep that cannot
		// read the CP side acts on nothing there: sweep.cp_unknown).
		retry := res.Skipped == sweep.SkippedLocked || res.CPSide == sweep.CPUnknown
		if !retry || attempt == 10 {
			return out.String()
		}
		t.Logf("chaos-sweep: sweep %d did nothing (skipped %q, cp side %s); asking again", attempt, res.Skipped, res.CPSide)
	}
}
