package bench

import (
	"context"
	"fmt"
	"github.com/molecule-ai/provision-worker/internal/store"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/worker"
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
// the last of them finished (its finalized_at, see waitDone).
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
		last, f, err := waitDone(ctx, events, p.kind, n)
		failures += f
		if err != nil {
			return 0, failures, err
		}
		total += last.Sub(start)
	}
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := c.Stop(stopCtx); err != nil {
		return 0, failures, fmt.Errorf("stop client: %w", err)
	}
	return total, failures, nil
}

// contender is one side of the throughput comparison: it works 2 × n jobs
// on pool and returns the time the clock ran.
type contender struct {
	name string // in the result lines: throughput_<name>_jobs_per_s
	run  func(ctx context.Context, env *Env, pool *pgxpool.Pool, n int) (time.Duration, error)
}

// contenders are bare River (River's own ceiling: no-op jobs, batched
// completions), the cheapest transactional worker (one row update and
// JobCompleteTx per job) and the worker (provision→terminate cycles).
var contenders = []contender{
	{name: "bare_river", run: bareThroughput},
	{name: "ceiling", run: ceilingThroughput},
	{name: "worker", run: workerThroughput(jobs.DefaultSettings())},
	// The opt-in COMPLETION_SYNCHRONOUS_COMMIT=off (docs/design.md,
	// "Durability: asynchronous completion commits"): printed beside the
	// default, in the same run, and not a target.
	{name: "worker_async_commit", run: workerThroughput(asyncCommitSettings())},
}

func asyncCommitSettings() jobs.Settings {
	s := jobs.DefaultSettings()
	s.CompletionSynchronousCommit = jobs.SynchronousCommitOff
	return s
}

// workerThroughput is the worker's contender under settings.
func workerThroughput(settings jobs.Settings) func(context.Context, *Env, *pgxpool.Pool, int) (time.Duration, error) {
	return func(ctx context.Context, env *Env, pool *pgxpool.Pool, n int) (time.Duration, error) {
		d, failures, err := cycleThroughput(ctx, pool, n, 0, settings)
		if failures > 0 {
			env.logf("throughput: %d worker job attempts failed and retried", failures)
		}
		return d, err
	}
}

// throughputRun is one three-way comparison: per contender, jobs per
// second and statements per job.
type throughputRun struct {
	rate, queries, trips map[string]float64
}

func (r throughputRun) ratio(a, b string) float64 { return r.rate[a] / r.rate[b] }

// Throughput is figure 3: bare River, the ceiling worker and the worker
// work the same number of jobs with the same client settings, on the same
// database, ThroughputRuns times. Each run gets a fresh database and
// starts with a different contender, so neither a table's growth nor the
// machine's drift favours one side; the figure is judged on the medians.
func Throughput(ctx context.Context, env *Env) ([]Result, error) {
	runs := max(env.Scale.ThroughputRuns, 1)
	var all []throughputRun
	var out []Result
	for i := range runs {
		r, err := throughputOnce(ctx, env, i)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		all = append(all, r)
		p := fmt.Sprintf("throughput_run%d_", i+1)
		for _, c := range contenders {
			out = append(out, Result{p + c.name + "_jobs_per_s", r.rate[c.name], "/s"})
		}
		out = append(out,
			Result{p + "worker_vs_ceiling_ratio", r.ratio("worker", "ceiling"), "x"},
			Result{p + "worker_vs_bare_ratio", r.ratio("worker", "bare_river"), "x"},
			Result{p + "worker_async_commit_vs_worker_ratio", r.ratio("worker_async_commit", "worker"), "x"})
	}
	med := func(f func(throughputRun) float64) float64 {
		vals := make([]float64, len(all))
		for i, r := range all {
			vals[i] = f(r)
		}
		return median(vals)
	}
	for _, c := range contenders {
		out = append(out, Result{"throughput_" + c.name + "_jobs_per_s", med(func(r throughputRun) float64 { return r.rate[c.name] }), "/s"})
	}
	// Statements per job, inserts and start-up included: the cost the
	// ratios come from, and unlike times it does not vary with the
	// machine's load.
	for _, c := range contenders {
		out = append(out, Result{"throughput_" + c.name + "_queries_per_job", med(func(r throughputRun) float64 { return r.queries[c.name] }), "count"})
	}
	for _, c := range contenders {
		out = append(out, Result{"throughput_" + c.name + "_round_trips_per_job", med(func(r throughputRun) float64 { return r.trips[c.name] }), "count"})
	}
	// The ratios are the medians of each run's own ratio: the contenders of
	// one run share the machine's state, those of different runs need not.
	return append(out,
		Result{"throughput_worker_vs_ceiling_ratio", med(func(r throughputRun) float64 { return r.ratio("worker", "ceiling") }), "x"},
		Result{"throughput_worker_vs_bare_ratio", med(func(r throughputRun) float64 { return r.ratio("worker", "bare_river") }), "x"},
		Result{"throughput_worker_async_commit_vs_worker_ratio", med(func(r throughputRun) float64 { return r.ratio("worker_async_commit", "worker") }), "x"},
	), nil
}

// throughputOnce runs every contender once on a fresh database, starting
// with contender number run (mod their count), each on its own counted pool.
func throughputOnce(ctx context.Context, env *Env, run int) (throughputRun, error) {
	r := throughputRun{rate: map[string]float64{}, queries: map[string]float64{}, trips: map[string]float64{}}
	db, err := env.NewDB(ctx)
	if err != nil {
		return r, err
	}
	n := env.Scale.Cycles
	for k := range contenders {
		c := contenders[(run+k)%len(contenders)]
		q := &queryCounter{}
		// Every contender on the pool the worker command opens for
		// the production worker counts.
		pool, err := workerPool(ctx, db, q, jobs.Options{})
		if err != nil {
			return r, err
		}
		d, err := c.run(ctx, env, pool, n)
		pool.Close()
		if err != nil {
			return r, fmt.Errorf("%s: %w", c.name, err)
		}
		r.rate[c.name] = perSecond(2*n, d)
		r.queries[c.name] = float64(q.n.Load()) / float64(2*n)
		r.trips[c.name] = float64(q.trips.Load()) / float64(2*n)
		env.logf("throughput run %d: %s %.0f jobs/s, %.2f statements/job, %.2f round trips/job", run+1, c.name, r.rate[c.name], r.queries[c.name], r.trips[c.name])
	}
	return r, nil
}

func bareThroughput(ctx context.Context, _ *Env, pool *pgxpool.Pool, n int) (time.Duration, error) {
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
// batch committed in one handler transaction, against a CP of latency,
// with the worker under settings.
func cycleThroughput(ctx context.Context, pool *pgxpool.Pool, n int, latency time.Duration, settings jobs.Settings) (time.Duration, int, error) {
	srv, api, err := startCP(cpfake.Options{Latency: latency})
	if err != nil {
		return 0, 0, err
	}
	defer srv.Close()
	worker, err := newWorkerSettings(pool, api, prodFetch, settings)
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

// newWorkerSettings is newWorker under settings.
func newWorkerSettings(pool *pgxpool.Pool, api cp.API, fs fetchSettings, settings jobs.Settings) (*jobs.Client, error) {
	deps := &worker.Deps{
		CP: api, Log: zerolog.New(io.Discard).Level(zerolog.InfoLevel),
		Metrics: obs.NewMetrics(), Settings: settings,
	}
	return worker.NewWorkerClient(pool, deps, jobs.Options{
		ProvisionWorkers: prodWorkers, TerminateWorkers: prodWorkers,
		FetchCooldown: fs.Cooldown, FetchPollInterval: fs.Poll,
	})
}
