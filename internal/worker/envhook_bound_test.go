package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A slow but working env hook used to eat the job's time: the CP call then
// hit the job's deadline, failed() could not even mark the row on the
// expired context, and the sweep marked the workspace failed for the
// host's slowness. The hook is now bounded to leave the CP call its
// timeout, and its cut-off is an env hook failure. (Review 13, finding 8.)
func TestEnvHook_SlowHookDoesNotTurnIntoAFailedWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{
		CPTimeout: time.Second,
		Fake:      cpfake.Options{Latency: 500 * time.Millisecond},
		// MaxSnoozes only keeps the test short: the last attempt snoozes.
		Settings: jobs.Settings{ProvisionTimeout: 1500 * time.Millisecond, ProvisionMaxAttempts: 1, MaxSnoozes: 2},
		Env: func(ctx context.Context, _ string) (map[string]string, error) {
			select { // the host's KMS is slow today, but answers
			case <-time.After(1200 * time.Millisecond):
				return map[string]string{"K": "v"}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}})
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	j := finalJob(t, e, job.ID)
	ws := e.Workspace(id)
	t.Logf("job %s errors=%+v; row %s: %s; provisions sent: %d", j.State, j.Errors, ws.Status, ws.LastError, len(requestsOf(e.CP, cpfake.RouteProvision)))
	require.Contains(t, j.Errors[len(j.Errors)-1].Error, jobs.ErrEnvHook.Error(), "the hook's cut-off is an env hook failure")
	_, err := e.Pool.Exec(context.Background(),
		`UPDATE workspaces SET status_changed_at = now() - interval '2 hours' WHERE id = $1`, id)
	require.NoError(t, err)
	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	t.Logf("sweep: orphans=%v marked_failed=%d", res.Orphans, res.MarkedFailed)
	require.NotEqual(t, store.StatusFailed, e.Workspace(id).Status, "the host's slow (but working) env hook failed the workspace")
}

// A last attempt whose CP call ran the job's context out used to mark the
// row failed in a transaction on that expired context: nothing was
// written, the job was discarded, and the row stayed provisioning. The
// mark now runs on its own bounded context, as record() does.
func TestProvisionFailed_MarksTheRowEvenWhenTheJobContextExpired(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	ws := e.Workspace(id)
	job := &river.Job[jobs.ProvisionArgs]{
		JobRow: &rivertype.JobRow{ID: res.Job.ID, Kind: jobs.KindProvision, Attempt: 1, MaxAttempts: 1},
		Args:   jobs.ProvisionArgs{WorkspaceID: id, Generation: ws.Generation, Nonce: ws.Nonce},
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	cause := errors.New("cp: provision: context deadline exceeded")
	err := worker.FailProvisionForTest(ctx, e.Deps, job, ws, cause)
	require.ErrorIs(t, err, cause)
	require.Equal(t, store.StatusFailed, e.Workspace(id).Status)
}
