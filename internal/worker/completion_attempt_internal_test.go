package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// staleArgs is a job whose first run is held back (a paused process)
// while River rescues the job, runs it again and snoozes it.
type staleArgs struct{}

func (staleArgs) Kind() string { return "test_stale_attempt" }

type staleRun struct {
	job  *river.Job[staleArgs]
	done chan error // the run's completion result, once released
}

type staleWorker struct {
	river.WorkerDefaults[staleArgs]
	deps    *Deps
	runs    chan staleRun
	release chan struct{}
}

// Work hands each run to the test. The first and the third fetch wait for
// release and then complete with a change of their own (a workspace row
// named after the fetch); the second snoozes, as a provision does on a
// CP's Retry-After or a terminate on a provision still in flight.
func (w staleWorker) Work(ctx context.Context, job *river.Job[staleArgs]) error {
	if len(job.AttemptedBy) == 2 {
		return river.JobSnooze(time.Millisecond)
	}
	run := staleRun{job: job, done: make(chan error, 1)}
	w.runs <- run
	<-w.release
	err := complete(context.WithoutCancel(ctx), w.deps, job, func(tx pgx.Tx, _ *timeline) error {
		_, err := tx.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, provision_nonce) VALUES ($1, 'stopped', 'stopped', $2)`,
			uuid.NewString(), job.AttemptedAt.Format(time.RFC3339Nano))
		return err
	})
	run.done <- err
	return err
}

// A run held back past the rescuer (a paused process, a long GC, a
// partition), whose job River then rescued, fetched again, snoozed (a
// snooze gives the attempt back) and fetched once more, finds the job
// running again when it wakes. Its completion must be refused, or it
// commits the stale run's change, completes the job, and cuts off the run
// that holds it now (invariant "completion-checked commit"). Unlike
// TestCompletion_RefusedUnlessTheAttemptStillRuns, River itself moves the
// job here (its fetch, snooze and retry; the rescue is its statement).
func TestCompletion_StaleRunRefusedAfterRescueAndSnooze(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	deps := &Deps{Pool: pool, Log: zerolog.Nop(), Settings: jobs.Settings{Schema: store.DefaultSchema}}
	w := staleWorker{deps: deps, runs: make(chan staleRun, 2), release: make(chan struct{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:            store.DefaultSchema,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 3}},
		Workers:           workers,
		FetchCooldown:     5 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		JobTimeout:        -1,
	})
	require.NoError(t, err)
	res, err := client.Insert(ctx, staleArgs{}, nil)
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		close(w.release)
		_ = client.Stop(context.Background())
	})
	next := func() staleRun {
		select {
		case r := <-w.runs:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("the job was not fetched")
			return staleRun{}
		}
	}
	stale := next()
	require.Equal(t, 1, stale.job.Attempt)

	// River's rescuer (JobRescueMany, as riverpgxv5 runs it) finds the run
	// stuck and makes the job retryable; an operator's Retry in River UI
	// (JobRetry) makes it available at once instead of at the scheduler's
	// next pass. The second fetch (attempt 2) snoozes; the third is
	// attempt 1 again.
	_, err = pool.Exec(ctx, `
		UPDATE river_job SET errors = array_append(errors, '{"error":"stuck"}'::jsonb), finalized_at = NULL,
			scheduled_at = now(), metadata = metadata || '{"river:rescue_count":1}', state = 'retryable'
		WHERE id = $1 AND state = 'running'`, res.Job.ID)
	require.NoError(t, err)
	_, err = client.JobRetry(ctx, res.Job.ID)
	require.NoError(t, err)
	live := next()
	require.Len(t, live.job.AttemptedBy, 3)
	// The snooze gave attempt 2 back and the third fetch took it again:
	// River gives a run back its own number, never an older run's, so the
	// attempt does name the run here. Should River ever hand the rescued
	// run's number out again, the refusal below is what must hold.
	require.Equal(t, 2, live.job.Attempt)

	// The held-back run wakes first; the live run waits for its own
	// release, which the cleanup sends.
	w.release <- struct{}{}
	staleErr := <-stale.done
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workspaces WHERE provision_nonce = $1`,
		stale.job.AttemptedAt.Format(time.RFC3339Nano)).Scan(&n))
	require.Zero(t, n, "the stale run's change committed")
	require.True(t, errors.Is(staleErr, ErrNotCompleted), "the stale run was not refused: %v", staleErr)
	var state string
	require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state))
	require.Equal(t, "running", state, "the stale run completed the job of the live run")
}
