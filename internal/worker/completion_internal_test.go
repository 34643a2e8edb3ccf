package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// completionArgs is a job completed either by River's JobCompleteTx or by
// the worker's own completion (store.QueueCompleteJob through
// completeFunc), to compare what each leaves behind.
type completionArgs struct {
	Own bool `json:"own"`
}

func (completionArgs) Kind() string { return "test_completion" }

type completionWorker struct {
	river.WorkerDefaults[completionArgs]
	pool *pgxpool.Pool
}

func (w completionWorker) Work(ctx context.Context, job *river.Job[completionArgs]) error {
	if !job.Args.Own {
		return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
			_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
			return err
		})
	}
	return completeFunc(ctx, w.pool, nil, func(pgx.Tx) error { return nil }, func(b *pgx.Batch) {
		store.MustFor("").QueueCompleteJob(b, job.ID, job.Attempt, time.Now())
	})
}

// The worker completes its jobs with its own statement, not River's
// JobCompleteTx (docs/benchmarks.md says why). River must not be able to
// tell: the row is left as JobCompleteTx leaves it, in every column but
// the ids and times, and River reports the job completed to subscribers.
func TestCompletion_LeavesTheJobAsJobCompleteTxDoes(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	workers := river.NewWorkers()
	river.AddWorker(workers, completionWorker{pool: pool})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:  store.DefaultSchema,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		Workers: workers,
	})
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	ids := map[bool]int64{}
	for _, own := range []bool{false, true} {
		res, err := client.Insert(ctx, completionArgs{Own: own}, nil)
		require.NoError(t, err)
		ids[own] = res.Job.ID
	}
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
	for range 2 {
		select {
		case ev := <-events:
			require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job %d: %v", ev.Job.ID, ev.Job.Errors)
		case <-time.After(30 * time.Second):
			t.Fatal("jobs did not complete")
		}
	}
	type row struct {
		State, Errors, Metadata string
		Attempt, AttemptedBy    int
		Finalized, Scheduled    bool
	}
	read := func(id int64) row {
		var r row
		require.NoError(t, pool.QueryRow(ctx, `
			SELECT state::text, coalesce(errors::text, ''), metadata::text, attempt, cardinality(attempted_by),
				finalized_at IS NOT NULL AND finalized_at >= attempted_at, scheduled_at <= attempted_at
			FROM river_job WHERE id = $1`, id).
			Scan(&r.State, &r.Errors, &r.Metadata, &r.Attempt, &r.AttemptedBy, &r.Finalized, &r.Scheduled))
		return r
	}
	theirs, own := read(ids[false]), read(ids[true])
	require.Equal(t, "completed", theirs.State)
	require.True(t, theirs.Finalized)
	require.Equal(t, theirs, own)
}

// The completion refuses, and the change rolls back with it, unless the
// job still runs under the attempt that completes it: a rescued job
// re-run under a newer attempt, a cancelled, completed or deleted job
// (invariant "completion-checked commit").
func TestCompletion_RefusedUnlessTheAttemptStillRuns(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	st := store.MustFor("")
	var jobID int64
	require.NoError(t, pool.QueryRow(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, state, attempt, attempted_at)
		VALUES ('{}', 'test_completion', 5, 'running', 1, now()) RETURNING id`).Scan(&jobID))
	for _, tc := range []struct {
		name, setup string
		attempt     int
		completes   bool
	}{
		{"another attempt runs it", `UPDATE river_job SET state = 'running', attempt = 2 WHERE id = $1`, 1, false},
		{"cancelled", `UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`, 1, false},
		{"completed already", `UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1`, 1, false},
		{"rescued to retryable", `UPDATE river_job SET state = 'retryable', finalized_at = NULL WHERE id = $1`, 1, false},
		{"deleted", `DELETE FROM river_job WHERE id = $1`, 1, false},
		{"still running", `INSERT INTO river_job (id, args, kind, max_attempts, state, attempt, attempted_at)
			VALUES ($1, '{}', 'test_completion', 5, 'running', 3, now())`, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, tc.setup, jobID)
			require.NoError(t, err)
			wsID := uuid.NewString()
			err = completeFunc(ctx, pool, nil, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, provision_nonce) VALUES ($1, 'stopped', 'stopped', 'n')`, wsID)
				return err
			}, func(b *pgx.Batch) { st.QueueCompleteJob(b, jobID, tc.attempt, time.Now()) })
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workspaces WHERE id = $1`, wsID).Scan(&n))
			if tc.completes {
				require.NoError(t, err)
				require.Equal(t, 1, n, "the change did not commit")
				return
			}
			var ce *commitError
			require.True(t, errors.As(err, &ce) && store.IsNotCompleted(ce.err), "want a refusal, got %v", err)
			require.Zero(t, n, "the change committed without the job's completion")
			// The connection went back to the pool idle, not in the
			// aborted transaction.
			require.NoError(t, pool.QueryRow(ctx, `SELECT 1`).Scan(&n))
		})
	}
}

// A host's statement failing with the SQLSTATE the completion refuses
// with is the host's error, not a refusal: complete() would otherwise
// read it as a job moved on and log a false job.not_completed.
func TestCompletion_ChangeErrorsAreNotRefusals(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	err := completeFunc(ctx, pool, nil, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT 1 / 0`)
		return err
	}, func(b *pgx.Batch) { store.MustFor("").QueueCompleteJob(b, 1, 1, time.Now()) })
	require.True(t, store.IsNotCompleted(err), "the change's own error: %v", err)
	var ce *commitError
	require.False(t, errors.As(err, &ce), "a change's error read as the completion's")
}
