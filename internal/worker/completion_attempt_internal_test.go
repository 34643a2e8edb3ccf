package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
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

// A COMMIT that fails with the SQLSTATE the completion refuses with (a
// host's deferred constraint trigger, run at COMMIT, on a table its
// outcome hook wrote) is not a refusal: the job still runs under this
// attempt, and complete() must not report it as moved on (a false
// job.not_completed, and an ErrNotCompleted that provision's hand-off
// reads as River having moved the job).
func TestCompletion_CommitErrorsAreNotRefusals(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE TABLE host_checked (id int);
		CREATE FUNCTION host_check() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM 1 / (SELECT count(*) - count(*) FROM host_checked); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER host_check AFTER INSERT ON host_checked
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION host_check();`)
	require.NoError(t, err)
	job := &river.Job[staleArgs]{JobRow: insertRunningJob(t, pool)}
	deps := &Deps{Pool: pool, Log: zerolog.Nop(), Settings: jobs.Settings{Schema: store.DefaultSchema}}
	err = complete(ctx, deps, job, func(tx pgx.Tx, _ *timeline) error {
		_, err := tx.Exec(ctx, `INSERT INTO host_checked VALUES (1)`)
		return err
	})
	require.Error(t, err)
	require.True(t, store.IsNotCompleted(err), "the COMMIT's own error is kept: %v", err)
	require.False(t, errors.Is(err, ErrNotCompleted), "a failed COMMIT read as the job moved on: %v", err)
	require.Contains(t, err.Error(), fmt.Sprintf("complete job %d: ", job.ID), "the error says what failed")
	var state string
	require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, job.ID).Scan(&state))
	require.Equal(t, "running", state)
}

// insertRunningJob inserts a job running its first attempt, as River's
// fetch leaves it, and returns its row.
func insertRunningJob(t *testing.T, pool *pgxpool.Pool) *rivertype.JobRow {
	t.Helper()
	row := &rivertype.JobRow{Kind: staleArgs{}.Kind(), Attempt: 1, MaxAttempts: 5, State: rivertype.JobStateRunning}
	var at time.Time
	require.NoError(t, pool.QueryRow(context.Background(), `
		INSERT INTO river_job (args, kind, max_attempts, state, attempt, attempted_at, attempted_by)
		VALUES ('{}', $1, 5, 'running', 1, now(), '{test}') RETURNING id, attempted_at`, row.Kind).Scan(&row.ID, &at))
	row.AttemptedAt = &at
	row.AttemptedBy = []string{"test"}
	return row
}

// A context that ends while the completing pipeline is out (the job's
// timeout, an operator's Cancel on the terminate paths) closes the
// connection with the outcome unknown to the caller: the server may have
// run the COMMIT. Whatever it did, the change and the completion went
// together (invariant "completion-checked commit"), the caller is told it
// failed (never a refusal, which would mean "rolled back"), and no
// connection is left open in the transaction. (pgx cancels the statement
// as it closes the connection, so here the COMMIT mostly does not run;
// the assertion holds either way.)
func TestCompletion_ContextEndingMidPipelineKeepsChangeAndCompletionTogether(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	// COMMIT runs the deferred trigger, which outlasts the context.
	_, err := pool.Exec(ctx, `
		CREATE TABLE slow_commit (id text);
		CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON slow_commit
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();`)
	require.NoError(t, err)
	job := &river.Job[staleArgs]{JobRow: insertRunningJob(t, pool)}
	deps := &Deps{Pool: pool, Log: zerolog.Nop(), Settings: jobs.Settings{Schema: store.DefaultSchema}}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	marker := uuid.NewString()
	err = complete(cctx, deps, job, func(tx pgx.Tx, _ *timeline) error {
		if _, err := tx.Exec(cctx, `INSERT INTO slow_commit VALUES ($1)`, marker); err != nil {
			return err
		}
		// The change is in; the pipeline goes out next. Cancel once the
		// server sits in the COMMIT's trigger (pg_sleep), polled because
		// the server gives no signal for it.
		go func() {
			for cctx.Err() == nil {
				var n int
				if pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()`).Scan(&n) == nil && n > 0 {
					cancel()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return nil
	})
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNotCompleted), "an unknown outcome read as a refusal: %v", err)
	require.True(t, errors.Is(err, context.Canceled), "%v", err)

	// Wait for the server to finish the COMMIT it was given (the backend
	// leaves pg_stat_activity), polled: the server signals nothing.
	for {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'`).Scan(&n))
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var committed int
	var state string
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM slow_commit WHERE id = $1`, marker).Scan(&committed))
	require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, job.ID).Scan(&state))
	require.Equal(t, committed == 1, state == "completed", "change committed %d, job %s", committed, state)
	var inTx int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&inTx))
	require.Zero(t, inTx, "a connection was left in the transaction")
	t.Logf("outcome the caller was not told: committed=%v", committed == 1)
}

// The refusal must abort the transaction before its COMMIT in every way
// pgx can send the pipeline: a host may hand the worker a pool in any
// query exec mode (simple_protocol behind PgBouncer joins the batch into
// one multi-statement query; exec sends it unprepared).
func TestCompletion_RefusalHoldsInEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	_, url := testdb.NewPool(t)
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgxpool.ParseConfig(url)
			require.NoError(t, err)
			cfg.ConnConfig.DefaultQueryExecMode = mode
			cfg.MaxConns = 1 // the connection checked after is the one used
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			defer pool.Close()
			deps := &Deps{Pool: pool, Log: zerolog.Nop(), Settings: jobs.Settings{Schema: store.DefaultSchema}}
			for _, refused := range []bool{true, false} {
				job := &river.Job[staleArgs]{JobRow: insertRunningJob(t, pool)}
				if refused {
					_, err := pool.Exec(ctx, `UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`, job.ID)
					require.NoError(t, err)
				}
				wsID := uuid.NewString()
				err = complete(ctx, deps, job, func(tx pgx.Tx, _ *timeline) error {
					_, err := tx.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, provision_nonce) VALUES ($1, 'stopped', 'stopped', 'n')`, wsID)
					return err
				})
				var n int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workspaces WHERE id = $1`, wsID).Scan(&n))
				var state string
				require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, job.ID).Scan(&state))
				if refused {
					require.True(t, errors.Is(err, ErrNotCompleted), "not a refusal: %v", err)
					require.Zero(t, n, "the change committed without the job's completion")
					require.True(t, finalNotCompleted(err))
				} else {
					require.NoError(t, err)
					require.Equal(t, 1, n)
					require.Equal(t, "completed", state)
				}
				var inTx int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&inTx))
				require.Zero(t, inTx, "a connection was left inside the transaction")
			}
		})
	}
}
