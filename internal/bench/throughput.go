package bench

import (
	"context"
	"fmt"
	"github.com/molecule-ai/provision-worker/internal/store"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/jobs"
)

// noopArgs is bare River's job: it does nothing, so its throughput is
// River's own ceiling on this database and machine.
type noopArgs struct {
	Seq int `json:"seq"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// Bare River's two queues mirror the worker's provision and terminate
// queues, with the same MaxWorkers each.
const (
	noopQueueA = "bench_noop_a"
	noopQueueB = "bench_noop_b"
)

func newBareRiver(pool *pgxpool.Pool, fs fetchSettings) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, noopWorker{})
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema: store.DefaultSchema, // the scratch database is migrated there, as the worker's
		Queues: map[string]river.QueueConfig{
			noopQueueA: {MaxWorkers: prodWorkers}, noopQueueB: {MaxWorkers: prodWorkers},
		},
		Workers: workers, FetchCooldown: fs.Cooldown, FetchPollInterval: fs.Poll,
		Logger: quietLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("bare river client: %w", err)
	}
	return c, nil
}

// phase is one batch of work: insert commits n jobs of kind, and the clock
// runs from the commit (or the client's start, for the first batch) until
// the worker has completed them all.
type phase struct {
	kind   string
	insert func(ctx context.Context, tx pgx.Tx) error
}

// runPhases times phases on client; the first phase is inserted before the
// client starts, so both contenders pay their start-up alike.
func runPhases[T any](ctx context.Context, pool *pgxpool.Pool, c *river.Client[T], n int, phases []phase) (time.Duration, int, error) {
	events, cancel := completions(c, n*len(phases))
	defer cancel()
	var total time.Duration
	failures := 0
	for i, p := range phases {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.insert(ctx, tx) }); err != nil {
			return 0, 0, fmt.Errorf("insert %s: %w", p.kind, err)
		}
		start := time.Now()
		if i == 0 {
			if err := c.Start(ctx); err != nil {
				return 0, 0, fmt.Errorf("start client: %w", err)
			}
		}
		f, err := waitDone(ctx, events, p.kind, n)
		failures += f
		if err != nil {
			return 0, failures, err
		}
		total += time.Since(start)
	}
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := c.Stop(stopCtx); err != nil {
		return 0, failures, fmt.Errorf("stop client: %w", err)
	}
	return total, failures, nil
}

// Throughput is figure 3: N provision→terminate cycles against a
// zero-latency CP, against bare River working the same number of no-op
// jobs with the same client settings, on the same database in the same run.
func Throughput(ctx context.Context, env *Env) ([]Result, error) {
	db, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	n := env.Scale.Cycles
	bareQ, ourQ := &queryCounter{}, &queryCounter{}
	barePool, err := tracedPool(ctx, db, bareQ)
	if err != nil {
		return nil, err
	}
	defer barePool.Close()
	bare, err := bareThroughput(ctx, barePool, n)
	if err != nil {
		return nil, err
	}
	ourPool, err := tracedPool(ctx, db, ourQ)
	if err != nil {
		return nil, err
	}
	defer ourPool.Close()
	ours, failures, err := cycleThroughput(ctx, ourPool, n, 0)
	if err != nil {
		return nil, err
	}
	if failures > 0 {
		env.logf("throughput: %d job attempts failed and retried", failures)
	}
	bareRate, ourRate := perSecond(2*n, bare), perSecond(2*n, ours)
	return []Result{
		{"throughput_bare_river_jobs_per_s", bareRate, "/s"},
		{"throughput_worker_jobs_per_s", ourRate, "/s"},
		{"throughput_ratio", ourRate / bareRate, "x"},
		// Statements per job, inserts and start-up included: the cost the
		// ratio comes from, and unlike times it does not vary with the
		// machine's load.
		{"throughput_bare_river_queries_per_job", float64(bareQ.n.Load()) / float64(2*n), "count"},
		{"throughput_worker_queries_per_job", float64(ourQ.n.Load()) / float64(2*n), "count"},
	}, nil
}

func bareThroughput(ctx context.Context, pool *pgxpool.Pool, n int) (time.Duration, error) {
	c, err := newBareRiver(pool, prodFetch)
	if err != nil {
		return 0, err
	}
	batch := func(queue string) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			params := make([]river.InsertManyParams, n)
			for i := range params {
				params[i] = river.InsertManyParams{Args: noopArgs{Seq: i}, InsertOpts: &river.InsertOpts{Queue: queue}}
			}
			_, err := c.InsertManyFastTx(ctx, tx, params)
			return err
		}
	}
	d, _, err := runPhases(ctx, pool, c, n, []phase{
		{kind: noopArgs{}.Kind(), insert: batch(noopQueueA)},
		{kind: noopArgs{}.Kind(), insert: batch(noopQueueB)},
	})
	return d, err
}

// cycleThroughput provisions n workspaces, then terminates them, each
// batch committed in one handler transaction, against a CP of latency.
func cycleThroughput(ctx context.Context, pool *pgxpool.Pool, n int, latency time.Duration) (time.Duration, int, error) {
	srv, api, err := startCP(cpfake.Options{Latency: latency})
	if err != nil {
		return 0, 0, err
	}
	defer srv.Close()
	worker, err := newWorker(pool, api, prodFetch)
	if err != nil {
		return 0, 0, err
	}
	ins, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return 0, 0, err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newUUID()
	}
	provision := func(ctx context.Context, tx pgx.Tx) error {
		for _, id := range ids {
			if err := request(ctx, tx, ins, id); err != nil {
				return err
			}
		}
		return nil
	}
	terminate := func(ctx context.Context, tx pgx.Tx) error {
		for _, id := range ids {
			if _, err := jobs.RequestTerminate(ctx, tx, ins, jobs.TerminateRequest{WorkspaceID: id, Actor: "bench"}); err != nil {
				return err
			}
		}
		return nil
	}
	return runPhases(ctx, pool, worker, n, []phase{
		{kind: jobs.KindProvision, insert: provision},
		{kind: jobs.KindTerminate, insert: terminate},
	})
}
