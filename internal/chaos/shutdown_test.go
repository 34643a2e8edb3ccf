package chaos

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// blockFirstProvision holds the first provision inside the fake CP, after
// it launched the instance and before it answers, until release.
func blockFirstProvision(w *world) (reached <-chan cp.Instance, release func()) {
	ch := make(chan cp.Instance, 1)
	gate := make(chan struct{})
	var once, rel sync.Once
	w.cp.SetProvisionHook(func(_ string, inst cp.Instance) {
		first := false
		once.Do(func() { first = true })
		if first {
			ch <- inst
			<-gate
		}
	})
	release = func() { rel.Do(func() { close(gate) }) }
	w.t.Cleanup(release)
	return ch, release
}

type jobRow struct {
	state   string
	attempt int
	errors  int
	by      int
}

func (w *world) job(id int64) jobRow {
	w.t.Helper()
	var j jobRow
	require.NoError(w.t, w.pool.QueryRow(context.Background(), `
		SELECT state::text, attempt, coalesce(array_length(errors, 1), 0), coalesce(array_length(attempted_by, 1), 0)
		FROM river_job WHERE id = $1`, id).Scan(&j.state, &j.attempt, &j.errors, &j.by))
	return j
}

// On SIGTERM a job stuck in a CP call past SHUTDOWN_TIMEOUT is cancelled,
// returns to available without spending an attempt, and the process exits
// 0. Pins Worker.stopRiver's StopAndCancel after Stop times out (without it the
// process hangs on the blocked call) and cpRetry/failed passing
// context.Canceled through unchanged (otherwise the attempt is spent and
// the job goes retryable with an error). Both forms: cmd/worker, and a
// host process embedding the worker that gets the SIGTERM itself.
func TestShutdown_CancelsJobBlockedPastTimeoutAndRequeuesIt(t *testing.T) {
	for _, f := range []form{formCommand, formEmbedded} {
		t.Run(f.String(), func(t *testing.T) { cancelsJobBlockedPastTimeout(t, f) })
	}
}

func cancelsJobBlockedPastTimeout(t *testing.T, f form) {
	w := newWorld(t, cpfake.Options{}, slowCP("1s"))
	reached, _ := blockFirstProvision(w)
	p := w.startForm("shutdown-w0", f)
	id := uuid.NewString()
	res := w.enqueueAll("provision", []string{id}, 1)[0]
	waitInstance(t, reached)

	started := time.Now()
	code, err := p.terminate(20 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Less(t, time.Since(started), 15*time.Second)
	require.True(t, logHas(p, `"evt":"worker.cancel_running"`), "the running job was not cancelled")

	j := w.job(res.JobID)
	require.Equal(t, "available", j.state)
	require.Equal(t, 0, j.attempt, "the cancelled attempt was spent")
	require.Equal(t, 0, j.errors)
}

// A job interrupted by shutdown comes back with its attempt number given
// back, yet it may have launched: the next run must adopt that instance,
// not launch a second one, even from a CP that ignores Idempotency-Key.
// Pins the `len(job.AttemptedBy) > 1` adoption condition in
// ProvisionWorker.launch (with only `Attempt > 1` it launches a duplicate).
func TestShutdown_InterruptedProvisionAdoptsOnRerun(t *testing.T) {
	w := newWorld(t, cpfake.Options{IgnoreIdempotency: true}, slowCP("500ms"))
	reached, release := blockFirstProvision(w)
	p := w.startWorker("shutdown-w0")
	id := uuid.NewString()
	res := w.enqueueAll("provision", []string{id}, 1)[0]
	inst := waitInstance(t, reached)
	code, err := p.terminate(20 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	release()

	w.launch(p)
	_, err = w.drainWhere(`SELECT count(*) FROM workspaces WHERE status <> 'running'`, time.Minute)
	require.NoError(t, err)
	var recorded string
	require.NoError(t, w.pool.QueryRow(context.Background(),
		`SELECT instance_id FROM workspaces WHERE id = $1`, id).Scan(&recorded))
	require.Equal(t, inst.InstanceID, recorded)
	require.Equal(t, 1, w.cp.Stats().Launched)
	require.Zero(t, w.cp.Stats().Duplicates)
	require.Equal(t, "completed", w.job(res.JobID).state)
}

// A job that finishes within SHUTDOWN_TIMEOUT completes; SIGTERM does not
// cut it off. Pins Worker.stopRiver's first phase (client.Stop with the timeout)
// rather than an immediate StopAndCancel. Both forms.
func TestShutdown_LetsRunningJobFinishWithinTimeout(t *testing.T) {
	for _, f := range []form{formCommand, formEmbedded} {
		t.Run(f.String(), func(t *testing.T) { letsRunningJobFinish(t, f) })
	}
}

func letsRunningJobFinish(t *testing.T, f form) {
	w := newWorld(t, cpfake.Options{}, slowCP("20s"))
	reached, release := blockFirstProvision(w)
	p := w.startForm("shutdown-w0", f)
	res := w.enqueueAll("provision", []string{uuid.NewString()}, 1)[0]
	waitInstance(t, reached)

	exited := make(chan int, 1)
	go func() {
		code, _ := p.terminate(40 * time.Second)
		exited <- code
	}()
	// Still running well past SIGTERM: River stopped fetching, not working.
	require.Never(t, func() bool { return !p.running() }, time.Second, 50*time.Millisecond)
	release()
	require.Equal(t, 0, <-exited)
	j := w.job(res.JobID)
	require.Equal(t, "completed", j.state)
	require.Equal(t, 1, j.attempt)
}

// slowCP lets a CP call outlast the shutdown timeout, so the test sees
// the shutdown act rather than the CP client's own timeout.
func slowCP(shutdown string) map[string]string {
	return map[string]string{"SHUTDOWN_TIMEOUT": shutdown, "CP_TIMEOUT": "30s",
		"PROVISION_TIMEOUT": "40s", "TERMINATE_TIMEOUT": "40s", "RESCUE_AFTER": "50s"}
}

func waitInstance(t *testing.T, ch <-chan cp.Instance) cp.Instance {
	t.Helper()
	select {
	case inst := <-ch:
		return inst
	case <-time.After(30 * time.Second):
		t.Fatal("no provision reached the CP")
		return cp.Instance{}
	}
}
