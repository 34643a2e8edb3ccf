package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// ceilingArgs is the ceiling worker's job: the row it updates.
type ceilingArgs struct {
	Row int64 `json:"row"`
}

func (ceilingArgs) Kind() string { return "bench_ceiling" }

// ceilingWorker is the cheapest transactional River worker there is: per
// job, one transaction that updates one row and completes the job with
// JobCompleteTx. Any worker that commits a row change together with its
// completion (invariant "completion-checked commit") pays at least this;
// what the worker costs above it is what this project adds.
type ceilingWorker struct {
	river.WorkerDefaults[ceilingArgs]
	pool *pgxpool.Pool
}

func (w ceilingWorker) Work(ctx context.Context, job *river.Job[ceilingArgs]) error {
	return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, benchStore.Q(`UPDATE {schema}.bench_ceiling SET done = done + 1 WHERE id = $1`), job.Args.Row)
		if err != nil {
			return fmt.Errorf("update ceiling row %d: %w", job.Args.Row, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("ceiling row %d: updated %d rows", job.Args.Row, tag.RowsAffected())
		}
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return fmt.Errorf("complete ceiling job %d: %w", job.ID, err)
		}
		return nil
	})
}

// The ceiling's queues mirror bare River's and the worker's: two of
// prodWorkers each.
const (
	ceilingQueueA = "bench_ceiling_a"
	ceilingQueueB = "bench_ceiling_b"
)

func newCeiling(pool *pgxpool.Pool, fs fetchSettings) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, ceilingWorker{pool: pool})
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema: store.DefaultSchema,
		Queues: map[string]river.QueueConfig{
			ceilingQueueA: {MaxWorkers: prodWorkers}, ceilingQueueB: {MaxWorkers: prodWorkers},
		},
		Workers: workers, FetchCooldown: fs.Cooldown, FetchPollInterval: fs.Poll,
		Logger: quietLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("ceiling river client: %w", err)
	}
	return c, nil
}

// ceilingThroughput works 2 × n ceiling jobs in two batches, as bare River
// and the worker do, then checks that every job's row was updated exactly
// once: a ceiling that skipped its row change would be no ceiling.
func ceilingThroughput(ctx context.Context, _ *Env, pool *pgxpool.Pool, n int) (time.Duration, error) {
	if _, err := pool.Exec(ctx, benchStore.Q(`
		CREATE TABLE IF NOT EXISTS {schema}.bench_ceiling (id bigint PRIMARY KEY, done int NOT NULL DEFAULT 0)`)); err != nil {
		return 0, fmt.Errorf("create ceiling table: %w", err)
	}
	c, err := newCeiling(pool, prodFetch)
	if err != nil {
		return 0, err
	}
	batch := func(queue string, first int) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, benchStore.Q(`
				INSERT INTO {schema}.bench_ceiling (id) SELECT generate_series($1::bigint, $2::bigint)`),
				first, first+n-1); err != nil {
				return fmt.Errorf("insert ceiling rows: %w", err)
			}
			params := make([]river.InsertManyParams, n)
			for i := range params {
				params[i] = river.InsertManyParams{Args: ceilingArgs{Row: int64(first + i)}, InsertOpts: &river.InsertOpts{Queue: queue}}
			}
			_, err := c.InsertManyFastTx(ctx, tx, params)
			return err
		}
	}
	d, failures, err := runPhases(ctx, pool, c, n, []phase{
		{kind: ceilingArgs{}.Kind(), insert: batch(ceilingQueueA, 0)},
		{kind: ceilingArgs{}.Kind(), insert: batch(ceilingQueueB, n)},
	})
	if err != nil {
		return 0, err
	}
	if failures > 0 {
		return 0, fmt.Errorf("ceiling: %d job attempts failed", failures)
	}
	return d, checkCeilingRows(ctx, pool, 2*n)
}

// checkCeilingRows fails unless want rows exist and each was updated
// exactly once.
func checkCeilingRows(ctx context.Context, pool *pgxpool.Pool, want int) error {
	var rows, once int
	err := pool.QueryRow(ctx, benchStore.Q(`
		SELECT count(*), count(*) FILTER (WHERE done = 1) FROM {schema}.bench_ceiling`)).Scan(&rows, &once)
	if err != nil {
		return fmt.Errorf("count ceiling rows: %w", err)
	}
	if rows != want || once != want {
		return fmt.Errorf("ceiling: %d rows, %d updated exactly once, want %d", rows, once, want)
	}
	return nil
}
