package bench

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
	"github.com/molecule-ai/provision-worker/jobs"
)

// pickupCase is one setting of the latency-for-load trade.
type pickupCase struct {
	name  string
	fetch fetchSettings
	gap   time.Duration // mean gap between requests; 0: the scale's light-load gap
}

// pickupCases: production, River's defaults, a fast poll, and production
// under a steadier stream (one request per 50 ms), which is faster than
// the handler-side insert client's own notify cooldown.
var pickupCases = []pickupCase{
	{name: "prod", fetch: prodFetch},
	{name: "river_defaults", fetch: fetchSettings{Cooldown: riverFetchCooldown, Poll: riverFetchPoll}},
	{name: "poll20ms", fetch: fetchSettings{Cooldown: prodFetchCooldown, Poll: 20 * time.Millisecond}},
	{name: "prod_20rps", fetch: prodFetch, gap: 50 * time.Millisecond},
}

// Pickup is figure 4: from the handler's commit to the CP receiving the
// provision, at light load (one request at a time), for each setting; and
// the queries per second an idle worker sends Postgres at it.
func Pickup(ctx context.Context, env *Env) ([]Result, error) {
	pool, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	srv, api, err := startCP(cpfake.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	var out []Result
	for _, pc := range pickupCases {
		gap := pc.gap
		if gap == 0 {
			gap = env.Scale.PickupGap
		}
		lat, idle, err := pickupRun(ctx, env.logf, pool, srv, api, pc.fetch, env.Scale.PickupSamples, gap, env.Scale.IdleWindow)
		if err != nil {
			return nil, fmt.Errorf("pickup %s: %w", pc.name, err)
		}
		out = append(out,
			Result{"pickup_" + pc.name + "_p50", quantile(lat, 0.5), "ms"},
			Result{"pickup_" + pc.name + "_p99", quantile(lat, 0.99), "ms"},
		)
		if pc.gap == 0 {
			out = append(out, Result{"pickup_" + pc.name + "_idle_queries_per_s", idle, "/s"})
		}
	}
	return out, nil
}

func pickupRun(ctx context.Context, logf func(string, ...any), pool *pgxpool.Pool, srv *cpfake.Server, api cp.API, fs fetchSettings, n int, gap, idleWindow time.Duration) ([]time.Duration, float64, error) {
	counter := &queryCounter{}
	wpool, err := workerPool(ctx, pool, counter, jobs.Options{})
	if err != nil {
		return nil, 0, err
	}
	defer wpool.Close()
	worker, err := newWorker(wpool, api, fs)
	if err != nil {
		return nil, 0, err
	}
	ins, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return nil, 0, err
	}
	got := make(chan string, 16)
	srv.SetProvisionHook(func(ws string, _ cp.Instance) { got <- ws })
	defer srv.SetProvisionHook(nil)
	failed, cancelSub := worker.Subscribe(river.EventKindJobFailed)
	defer cancelSub()
	if err := worker.Start(ctx); err != nil {
		return nil, 0, fmt.Errorf("start worker: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = worker.Stop(stopCtx)
	}()
	idle, err := idleQueryRate(ctx, counter, idleWindow)
	if err != nil {
		return nil, 0, err
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		jitter := time.Duration(rand.Int64N(int64(gap)/2+1)) - gap/4 // gap ± 25 %
		if err := sleepCtx(ctx, gap+jitter); err != nil {
			return nil, 0, err
		}
		d, err := onePickup(ctx, pool, ins, got)
		if err != nil {
			return nil, 0, err
		}
		lat = append(lat, d)
	}
	// A failed attempt retries after BackoffBase (1 s) and would pass for
	// slow pickup; say so rather than hide it in the p99.
	for {
		select {
		case ev := <-failed:
			logf("pickup: job %d attempt %d failed: %v", ev.Job.ID, ev.Job.Attempt, lastError(ev.Job.Errors))
		default:
			return lat, idle, nil
		}
	}
}

// onePickup commits one provision request and waits for the CP to see it;
// the clock starts before COMMIT, so the commit's own round trip counts.
func onePickup(ctx context.Context, pool *pgxpool.Pool, ins *jobs.Client, got <-chan string) (time.Duration, error) {
	id := newUUID()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	if err := request(ctx, tx, ins, id); err != nil {
		_ = tx.Rollback(ctx)
		return 0, err
	}
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ws := <-got:
			if ws == id {
				return time.Since(start), nil
			}
		case <-timeout:
			return 0, fmt.Errorf("the CP never saw workspace %s", id)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// idleQueryRate is how many queries per second the worker sends
// Postgres while it has nothing to do: the load side of the fetch
// settings.
func idleQueryRate(ctx context.Context, c *queryCounter, window time.Duration) (float64, error) {
	if err := sleepCtx(ctx, 200*time.Millisecond); err != nil { // past the start-up queries
		return 0, err
	}
	before, start := c.n.Load(), time.Now()
	if err := sleepCtx(ctx, window); err != nil {
		return 0, err
	}
	return float64(c.n.Load()-before) / time.Since(start).Seconds(), nil
}

// queryCounter counts the statements a pool sends (n) and the round trips
// they take (trips). A pipelined batch is one round trip however many
// statements it holds; pgx traces its statements through the BatchTracer
// methods only, so without them a batched statement would go uncounted.
type queryCounter struct{ n, trips atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	q.trips.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	q.trips.Add(1)
	return ctx
}

func (q *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	q.n.Add(1)
}

func (q *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// tracedPool opens a second pool on pool's database, with pool's
// settings, whose queries c traces (counts or times).
func tracedPool(ctx context.Context, pool *pgxpool.Pool, c pgx.QueryTracer) (*pgxpool.Pool, error) {
	return sizedPool(ctx, pool, c, 0)
}

// sizedPool is tracedPool with maxConns connections at most (0: pgx's
// default).
func sizedPool(ctx context.Context, pool *pgxpool.Pool, c pgx.QueryTracer, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	if err != nil {
		return nil, fmt.Errorf("pool config: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return newTracedPool(ctx, cfg, c)
}

// workerPool is a traced pool on pool's database sized as the worker
// command sizes its own for o's worker counts (workerenv.PoolConfig).
func workerPool(ctx context.Context, pool *pgxpool.Pool, c pgx.QueryTracer, o jobs.Options) (*pgxpool.Pool, error) {
	cfg, err := workerenv.PoolConfig(pool.Config().ConnString(), o)
	if err != nil {
		return nil, fmt.Errorf("worker pool config: %w", err)
	}
	return newTracedPool(ctx, cfg, c)
}

func newTracedPool(ctx context.Context, cfg *pgxpool.Config, c pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg.ConnConfig.Tracer = c
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("traced pool: %w", err)
	}
	return p, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func lastError(errs []rivertype.AttemptError) string {
	if len(errs) == 0 {
		return "no error recorded"
	}
	return errs[len(errs)-1].Error
}

// queryTimer sums the time of a pool's statements by their first line,
// for the notes of a slow figure.
type queryTimer struct {
	mu    sync.Mutex
	total map[string]time.Duration
	count map[string]int
}

type queryTimerKey struct{}

type queryTimerStart struct {
	sql   string
	start time.Time
}

func (q *queryTimer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, queryTimerKey{}, queryTimerStart{sql: d.SQL, start: time.Now()})
}

func (q *queryTimer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	s, ok := ctx.Value(queryTimerKey{}).(queryTimerStart)
	if !ok {
		return
	}
	key := strings.Join(strings.Fields(s.sql), " ")
	if len(key) > 60 {
		key = key[:60]
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total == nil {
		q.total, q.count = map[string]time.Duration{}, map[string]int{}
	}
	q.total[key] += time.Since(s.start)
	q.count[key]++
}

// top names the n statements that took the most time in all.
func (q *queryTimer) top(n int) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	keys := make([]string, 0, len(q.total))
	for k := range q.total {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(q.total[b], q.total[a]) })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%q ×%d %.2f s", k, q.count[k], q.total[k].Seconds()))
	}
	return strings.Join(parts, "; ")
}
