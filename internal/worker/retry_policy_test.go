package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Each failed terminate attempt is rescheduled after a jittered delay in
// [d/2, d], d doubling from BackoffBase up to TerminateBackoffCap. Pins
// TerminateWorker.NextRetry (River's default policy would wait seconds
// growing as attempt^4, far outside these bounds).
func TestRetryPolicy_TerminateBackoffIsCappedExponentialWithJitter(t *testing.T) {
	t.Parallel()
	base, capd := 20*time.Millisecond, 80*time.Millisecond
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{BackoffBase: base, TerminateBackoffCap: capd}})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	events, cancel := e.Worker.Subscribe(river.EventKindJobFailed)
	defer cancel()
	e.CP.FailNext(cpfake.RouteTerminate, 503, 6)
	e.Terminate(id)

	want := []time.Duration{20, 40, 80, 80, 80, 80}
	for i, d := range want {
		d *= time.Millisecond
		ev := <-events
		require.Equal(t, jobs.KindTerminate, ev.Job.Kind)
		last := ev.Job.Errors[len(ev.Job.Errors)-1]
		delay := ev.Job.ScheduledAt.Sub(last.At)
		// last.At is the attempt's start; the delay is added at its end.
		require.GreaterOrEqual(t, delay, d/2, "attempt %d", i+1)
		require.LessOrEqual(t, delay, d+time.Second, "attempt %d", i+1)
	}
	e.WaitStatus(id, store.StatusStopped)
}

// The default terminate budget outlasts about three days of CP outage at
// the backoff cap, so a weekend outage never discards a stop; provisions
// get a smaller budget of their own.
func TestRetryPolicy_DefaultBudgetsCoverThreeDaysOfTerminates(t *testing.T) {
	t.Parallel()
	d := jobs.DefaultSettings()
	require.Equal(t, 5*time.Minute, d.TerminateBackoffCap)
	require.GreaterOrEqual(t, time.Duration(d.TerminateMaxAttempts)*d.TerminateBackoffCap, 72*time.Hour)
	require.Less(t, d.ProvisionMaxAttempts, d.TerminateMaxAttempts)
}

// Jobs carry the attempt budget of the settings of the process that
// inserted them. Pins budgetHook.
func TestRetryPolicy_BudgetsComeFromSettings(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	client, err := jobs.NewInsertClient(e.Pool, jobs.Settings{TerminateMaxAttempts: 7, ProvisionMaxAttempts: 3})
	require.NoError(t, err)
	e.Insert = client
	id := uuid.NewString()
	p := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	require.Equal(t, 3, p.Job.MaxAttempts)
	term := e.Terminate(id)
	require.Equal(t, 7, term.Job.MaxAttempts)
}

// A terminate that exhausts its budget writes terminate.dead, is
// discarded, and leaves the row stopping with its instance id (never
// stopped); retrying the job re-drives it to stopped. Pins
// terminateFailed's last-attempt branch and invariant "confirmed stop"
// (docs/design.md).
func TestTerminate_ExhaustedBudgetIsDeadLeavesRowStoppingAndIsRedrivable(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{TerminateMaxAttempts: 3}})
	id := uuid.NewString()
	inst := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID
	e.CP.FailNext(cpfake.RouteTerminate, 500, 3)
	res := e.Terminate(id)

	e.WaitFor("the terminate to be discarded", func() bool {
		return jobState(t, e, res.Job.ID).State == rivertype.JobStateDiscarded
	})
	ws := e.Workspace(id)
	require.Equal(t, store.StatusStopping, ws.Status)
	require.Equal(t, inst, ws.InstanceID)
	require.Contains(t, eventNames(t, e, id), "terminate.dead")
	require.Len(t, e.CP.Live(id), 1)

	_, err := e.Worker.JobRetry(context.Background(), res.Job.ID)
	require.NoError(t, err)
	ws = e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Empty(t, e.CP.Live(id))
}

// A permanent provision failure (422) marks the row failed with the CP's
// message and cancels the job at once. Pins ProvisionWorker.failed's
// permanent branch (without it the job retries its whole budget).
func TestProvision_PermanentFailureMarksRowFailedAndCancelsJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	e.CP.FailNext(cpfake.RouteProvision, 422, 1)
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})

	ws := e.WaitStatus(id, store.StatusFailed)
	require.Contains(t, ws.LastError, "injected")
	e.WaitFor("the job to be cancelled", func() bool {
		return jobState(t, e, res.Job.ID).State == rivertype.JobStateCancelled
	})
	require.Equal(t, 1, jobState(t, e, res.Job.ID).Attempt)
	require.Len(t, requestsOf(e.CP, cpfake.RouteProvision), 1)
}
