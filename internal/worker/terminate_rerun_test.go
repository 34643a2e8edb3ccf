package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// lockWaiters counts sessions of this test's database waiting on a lock.
func lockWaiters(t *testing.T, e *jobtest.Env) int {
	t.Helper()
	var n int
	require.NoError(t, e.Pool.QueryRow(context.Background(), `
		SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
	return n
}

// An operator re-ran a completed terminate in River UI and a worker
// picked it up; a new stop's insert is then skipped as its duplicate.
// The old job must not read the row as "not stopping" and complete while
// that stop commits: the stop would be left without a job.
func TestTerminate_RerunOldJobDoesNotSwallowANewStop(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id := uuid.NewString()
	inst := e.OldInstance(id)
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusRunning, InstanceID: inst})
	old, err := e.Insert.Insert(ctx, jobs.TerminateArgs{WorkspaceID: id}, nil)
	require.NoError(t, err)
	_, err = e.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now(),
		attempted_by = ARRAY['another-worker'] WHERE id = $1`, old.Job.ID) // fetched by a worker
	require.NoError(t, err)
	row := jobState(t, e, old.Job.ID)

	stop, err := e.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = stop.Rollback(ctx) }()
	res, err := jobs.RequestTerminate(ctx, stop, e.Insert, jobs.TerminateRequest{WorkspaceID: id})
	require.NoError(t, err)
	require.Equal(t, old.Job.ID, res.Job.ID, "the new stop's insert is the old job's duplicate")

	done := make(chan error, 1)
	go func() {
		w := worker.NewTerminateWorkerForTest(e.Deps)
		done <- w.Work(rivertest.WorkContext(ctx, e.Worker), &river.Job[jobs.TerminateArgs]{JobRow: row, Args: jobs.TerminateArgs{WorkspaceID: id}})
	}()
	var workErr error
	returned := false
	e.WaitFor("the old job to decide or to wait for the stop", func() bool {
		select {
		case workErr = <-done:
			returned = true
			return true
		default:
			return lockWaiters(t, e) > 0
		}
	})
	require.NoError(t, stop.Commit(ctx))
	if !returned {
		select {
		case workErr = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the old job never finished after the stop committed")
		}
	}

	require.NoError(t, workErr)
	ws := e.Workspace(id)
	require.Equal(t, store.StatusStopped, ws.Status, "the new stop was swallowed by the old job")
	require.False(t, liveIDs(e)[inst])
}
