package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/molecule-ai/provision-worker/jobs"
)

// Noise thresholds of the soak: growth at most this is not a leak. The
// live heap after a GC still moves by a few MB with buffers and pools
// (connections' read buffers and statement caches), so small
// heaps get an absolute floor; goroutines move by the few that River and
// the pools start and end on their own.
const (
	soakP99RatioLimit       = 1.5
	soakHeapNoiseShare      = 0.20
	soakHeapNoiseFloorMB    = 4
	soakGoroutineNoiseShare = 0.10
	soakGoroutineNoiseFloor = 5
)

// soakHandlerConns sizes the handler side's pool: a web app committing
// 200 provisions and 200 terminates a second sizes its own pool for it.
// At pgx's default (4 here) the handler side itself was the bottleneck:
// 130 goroutines waited on its pool on average and it committed 150-180
// requests/s, not 200, which also hid how the worker keeps up.
const soakHandlerConns = 32

// soakStmtWindow is the window the soak times statements by: the first
// and the last are the ones the verdict compares.
const soakStmtWindow = 30 * time.Second

// Soak is figure 7: a steady stream of provisions (and, once each is
// running, its terminate) against a CP of random latency for minutes. It
// passes when pickup does not degrade from the first window to the last
// and heap and goroutines return to where they started.
func Soak(ctx context.Context, env *Env) ([]Result, error) {
	sc := env.Scale
	db, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	s, err := newSoak(ctx, db, sc)
	if err != nil {
		return nil, err
	}
	s.env = env
	defer s.close()
	return s.run(ctx, env)
}

// soak holds one soak run: the worker on its own counted pool, the
// handler side on another (a web app's pool, as in production), and the
// latency CP.
type soak struct {
	sc           Scale
	env          *Env
	db           *pgxpool.Pool // uncounted: depth samples
	wpool, hpool *pgxpool.Pool
	wq, hq       *stmtWindows // count and time each pool's statements
	cp           *latencyCP   // nil once dropped to weigh the fake's heap
	worker       *jobs.Client
	ins          *jobs.Client

	events       <-chan *river.Event
	cancelEvents func()

	provWG, termWG     sync.WaitGroup // handler transactions in flight
	stopConsume        chan struct{}
	consumeDone        chan struct{}
	provisioned        atomic.Int64 // provisions committed
	provDone, termDone atomic.Int64 // completions seen
	failures           atomic.Int64
	firstErr           atomic.Pointer[error]
	progress           chan struct{} // a completion arrived (cap 1)

	pending sync.Map // workspace id → time before its COMMIT, while recording
	mu      sync.Mutex
	t0      time.Time
	pickups []pickupSample
}

type pickupSample struct {
	at time.Duration // commit time since the soak's start
	d  time.Duration // commit → CP received the provision
}

func newSoak(ctx context.Context, db *pgxpool.Pool, sc Scale) (*soak, error) {
	s := &soak{sc: sc, db: db, wq: newStmtWindows(soakStmtWindow), hq: newStmtWindows(soakStmtWindow), progress: make(chan struct{}, 1),
		stopConsume: make(chan struct{}), consumeDone: make(chan struct{})}
	var err error
	// The worker's pool as the worker command sizes it for SoakWorkers.
	if s.wpool, err = workerPool(ctx, db, s.wq, jobs.Options{ProvisionWorkers: sc.SoakWorkers, TerminateWorkers: sc.SoakWorkers}); err != nil {
		return nil, err
	}
	if s.hpool, err = sizedPool(ctx, db, s.hq, soakHandlerConns); err != nil {
		s.close()
		return nil, err
	}
	if s.cp, err = startLatencyCP(sc.SoakLatencyMin, sc.SoakLatencyMax, s.arrived); err != nil {
		s.close()
		return nil, err
	}
	if s.worker, err = newWorkerN(s.wpool, s.cp.api, prodFetch, sc.SoakWorkers); err != nil {
		s.close()
		return nil, err
	}
	if s.ins, err = jobs.NewInsertClient(s.hpool, jobs.DefaultSettings()); err != nil {
		s.close()
		return nil, err
	}
	// Room for every completion of the run: River drops events a
	// subscriber has no room for, and a dropped one is a terminate never sent.
	room := int(float64(2*sc.SoakRate)*(sc.SoakDuration+sc.SoakWarmUp).Seconds()) + 1000
	s.events, s.cancelEvents = s.worker.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: room, Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed},
	})
	return s, nil
}

func (s *soak) close() {
	if s.worker != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.worker.Stop(stopCtx)
		cancel()
	}
	if s.cancelEvents != nil {
		s.cancelEvents()
	}
	if s.cp != nil {
		s.cp.Close()
	}
	for _, p := range []*pgxpool.Pool{s.wpool, s.hpool} {
		if p != nil {
			p.Close()
		}
	}
}

func (s *soak) run(ctx context.Context, env *Env) ([]Result, error) {
	sc := s.sc
	autovacuum, err := autovacuumOn(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if !autovacuum {
		env.notef("soak: the server runs without autovacuum; the soak vacuums its tables as autovacuum would (standInVacuum)")
		stopVacuum := standInVacuum(ctx, s.db, s.fail)
		defer func() { env.notef("soak: stand-in vacuums run: %d", stopVacuum()) }()
	}
	if err := s.worker.Start(ctx); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go s.consume(ctx)
	defer func() { close(s.stopConsume); <-s.consumeDone }()
	// Warm up at the soak's rate, so the pools are as full at the start as
	// at the end and River's leader has started its maintenance services
	// (each up to 1 s after the election, a few goroutines each).
	if err := s.drive(ctx, sc.SoakWarmUp, false); err != nil {
		return nil, err
	}
	if err := s.drain(ctx); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	startG, startHeap := s.settled()
	startConns := s.openConns()
	startLive := lastLiveHeap()
	env.logf("soak: %d goroutines, %.1f MB heap at start; %v at %g requests/s", startG, mb(startHeap), sc.SoakDuration, sc.SoakRate)

	wq0, hq0 := s.wq.n.Load(), s.hq.n.Load()
	w0, h0 := s.wpool.Stat(), s.hpool.Stat()
	prov0, pDone0, tDone0 := s.provisioned.Load(), s.provDone.Load(), s.termDone.Load()
	s.t0 = time.Now()
	s.wq.record(s.t0)
	s.hq.record(s.t0)
	depth := s.sampleDepth(ctx)
	err = s.drive(ctx, sc.SoakDuration, true)
	elapsed := time.Since(s.t0)
	wqN, hqN := s.wq.n.Load()-wq0, s.hq.n.Load()-hq0
	pDone, tDone := s.provDone.Load()-pDone0, s.termDone.Load()-tDone0
	wPool, hPool := poolUse(w0, s.wpool.Stat(), elapsed), poolUse(h0, s.hpool.Stat(), elapsed)
	if err != nil {
		depth()
		return nil, err
	}
	// A queue that cannot drain still has its figures printed: how far it
	// got and at what rates say why, where a bare error said nothing.
	drainStart := time.Now()
	drainErr := s.drain(ctx)
	drainEnd := time.Now()
	drainTime := drainEnd.Sub(drainStart)
	samples := depth()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if f := s.failures.Load(); f > 0 {
		env.logf("soak: %d job attempts failed and retried", f)
	}
	retried, snoozed, err := s.retriesAndSnoozes(ctx)
	if err != nil {
		return nil, err
	}
	endG, endHeapWithFake := s.settled()
	endConns := s.openConns()
	// The fake CP keeps every instance it launched, which a real worker
	// does not: weigh it by dropping it, and judge the heap without it.
	instances := s.cp.fake.Stats().Launched
	s.cp.Close()
	s.cp = nil
	_, endHeap := s.settled()
	endLive := lastLiveHeap()
	env.logf("soak: %d goroutines, %.1f MB heap at end (%.1f MB with the fake CP's %d instances)",
		endG, mb(endHeap), mb(endHeapWithFake), instances)

	// Windows by commit time over the whole run: when the handler side
	// cannot commit at the offered rate, the last commits land after
	// SoakDuration, and soak_requests_per_s shows the shortfall.
	first, last := s.windows(elapsed, drainEnd)
	// Judged on the live heap (what the GC marked reachable): HeapInuse
	// after a GC also counts spans that a few survivors keep in use after
	// the run's peak (fragmentation the runtime reuses), and it grew 5–6 MB
	// in runs whose live heap grew 1–1.5 MB. A leak is live growth.
	heapNoise := max(soakHeapNoiseShare*mb(startLive), soakHeapNoiseFloorMB)
	gNoise := max(soakGoroutineNoiseShare*float64(startG), soakGoroutineNoiseFloor)
	env.notef("%s", depthNote(sc.SoakDepthEvery, samples))
	env.notef("%s", rateNote(sc.SoakDepthEvery, samples))
	for _, l := range append(s.wq.notes("soak_worker_stmt", 6), s.hq.notes("soak_handler_stmt", 4)...) {
		env.notef("%s", l)
	}
	requests := s.provisioned.Load() - prov0
	maxDepth := 0.0
	for _, d := range samples {
		maxDepth = max(maxDepth, float64(d.depth))
	}
	drained := 1.0
	if drainErr != nil {
		drained = 0
	}
	res := []Result{
		{"soak_seconds", elapsed.Seconds(), "s"},
		{"soak_requests", float64(requests), "count"},
		{"soak_requests_per_s", float64(requests) / elapsed.Seconds(), "/s"},
		{"soak_workers_per_queue", float64(sc.SoakWorkers), "count"},
		{"soak_drained", drained, "bool"},
		{"soak_drain_seconds", drainTime.Seconds(), "s"},
		{"soak_provisions_done", float64(s.provDone.Load() - pDone0), "count"},
		{"soak_terminates_done", float64(s.termDone.Load() - tDone0), "count"},
		{"soak_provisions_done_per_s", float64(pDone) / elapsed.Seconds(), "/s"},
		{"soak_terminates_done_per_s", float64(tDone) / elapsed.Seconds(), "/s"},
		{"soak_requests_never_picked_up", float64(s.unpicked()), "count"},
		{"soak_jobs_retried", float64(retried), "count"},
		{"soak_jobs_snoozed", float64(snoozed), "count"},
		{"soak_pickup_first_p50", quantile(first, 0.5), "ms"},
		{"soak_pickup_first_p99", quantile(first, 0.99), "ms"},
		{"soak_pickup_last_p50", quantile(last, 0.5), "ms"},
		{"soak_pickup_last_p99", quantile(last, 0.99), "ms"},
		{"soak_pickup_p99_last_vs_first_ratio", p99Ratio(first, last), "x"},
		{"soak_queue_depth_max", maxDepth, "jobs"},
		{"soak_queue_depth_samples", float64(len(samples)), "count"},
		{"soak_worker_queries_per_s", float64(wqN) / elapsed.Seconds(), "/s"},
		{"soak_handler_queries_per_s", float64(hqN) / elapsed.Seconds(), "/s"},
		{"soak_worker_pool_max_conns", float64(s.wpool.Stat().MaxConns()), "count"},
		{"soak_worker_pool_empty_acquire_share", wPool.emptyShare, "x"},
		{"soak_worker_pool_mean_waiters", wPool.waiters, "count"},
		{"soak_handler_pool_max_conns", float64(s.hpool.Stat().MaxConns()), "count"},
		{"soak_handler_pool_empty_acquire_share", hPool.emptyShare, "x"},
		{"soak_handler_pool_mean_waiters", hPool.waiters, "count"},
		{"soak_pool_conns_start", float64(startConns), "count"},
		{"soak_pool_conns_end", float64(endConns), "count"},
		{"soak_heap_start_mb", mb(startLive), "MB"},
		{"soak_heap_end_mb", mb(endLive), "MB"},
		{"soak_heap_growth_mb", mb(endLive) - mb(startLive), "MB"},
		{"soak_heap_noise_mb", heapNoise, "MB"},
		{"soak_heap_inuse_start_mb", mb(startHeap), "MB"},
		{"soak_heap_inuse_end_mb", mb(endHeap), "MB"},
		{"soak_cp_fake_heap_mb", mb(endHeapWithFake) - mb(endHeap), "MB"},
		{"soak_goroutines_start", float64(startG), "count"},
		{"soak_goroutines_end", float64(endG), "count"},
		{"soak_goroutines_growth", float64(endG - startG), "count"},
		{"soak_goroutines_noise", gNoise, "count"},
	}
	env.notef("soak verdict: %s", soakVerdict(res, drainErr))
	if drainErr != nil {
		return res, drainErr
	}
	return res, s.err()
}

// p99Ratio is last's p99 over first's, NaN (judged not met) when either
// window has no sample: an empty window is no evidence of a flat p99.
func p99Ratio(first, last []time.Duration) float64 {
	if len(first) == 0 || len(last) == 0 {
		return math.NaN()
	}
	return quantile(last, 0.99) / quantile(first, 0.99)
}

// poolStats is how a pool served the run: the share of acquires that
// found no idle connection and the mean number of goroutines waiting for
// one (total acquire wait over the run's time, by Little's law).
type poolStats struct{ emptyShare, waiters float64 }

func poolUse(before, after *pgxpool.Stat, d time.Duration) poolStats {
	n := after.AcquireCount() - before.AcquireCount()
	if n == 0 {
		return poolStats{}
	}
	return poolStats{
		emptyShare: float64(after.EmptyAcquireCount()-before.EmptyAcquireCount()) / float64(n),
		waiters:    (after.AcquireDuration() - before.AcquireDuration()).Seconds() / d.Seconds(),
	}
}

// soakVerdict is the soak's one-line judgement: PASS, or FAIL with every
// reason, from the same lines the summary judges.
func soakVerdict(res []Result, drainErr error) string {
	v := map[string]float64{}
	for _, r := range res {
		v[r.Name] = r.Value
	}
	var why []string
	if drainErr != nil {
		why = append(why, fmt.Sprintf("queue did not drain (%v; provisions done at %.0f/s, terminates at %.0f/s, offered %.0f/s)",
			drainErr, v["soak_provisions_done_per_s"], v["soak_terminates_done_per_s"], v["soak_requests_per_s"]))
	}
	if r := v["soak_pickup_p99_last_vs_first_ratio"]; !(r <= soakP99RatioLimit) {
		why = append(why, fmt.Sprintf("pickup p99 last/first %.2f > %g (%.0f ms vs %.0f ms)",
			r, soakP99RatioLimit, v["soak_pickup_last_p99"], v["soak_pickup_first_p99"]))
	}
	if g, n := v["soak_heap_growth_mb"], v["soak_heap_noise_mb"]; g > n {
		why = append(why, fmt.Sprintf("heap grew %.1f MB > %.1f MB noise", g, n))
	}
	if g, n := v["soak_goroutines_growth"], v["soak_goroutines_noise"]; g > n {
		why = append(why, fmt.Sprintf("goroutines grew %.0f > %.0f noise", g, n))
	}
	if len(why) == 0 {
		return fmt.Sprintf("PASS (pickup p99 last/first %.2f <= %g, heap %+.1f MB <= %.1f, goroutines %+.0f <= %.0f)",
			v["soak_pickup_p99_last_vs_first_ratio"], soakP99RatioLimit, v["soak_heap_growth_mb"], v["soak_heap_noise_mb"],
			v["soak_goroutines_growth"], v["soak_goroutines_noise"])
	}
	return "FAIL: " + strings.Join(why, "; ")
}

// drive commits SoakRate provision requests per second for d, each in its
// own handler transaction started on schedule (an open loop: a slow
// commit does not lower the offered rate), then waits for them.
func (s *soak) drive(ctx context.Context, d time.Duration, record bool) error {
	interval := time.Duration(float64(time.Second) / s.sc.SoakRate)
	start := time.Now()
	for i := 0; ; i++ {
		at := time.Duration(i) * interval
		if at >= d {
			break
		}
		if err := sleepCtx(ctx, time.Until(start.Add(at))); err != nil {
			return err
		}
		s.provWG.Add(1)
		go s.provision(ctx, record)
	}
	s.provWG.Wait()
	return s.err()
}

func (s *soak) provision(ctx context.Context, record bool) {
	defer s.provWG.Done()
	id := newUUID()
	err := pgx.BeginFunc(ctx, s.hpool, func(tx pgx.Tx) error {
		if err := request(ctx, tx, s.ins, id); err != nil {
			return err
		}
		if record {
			s.pending.Store(id, time.Now()) // before COMMIT, as figure 4
		}
		return nil
	})
	if err != nil {
		s.pending.Delete(id)
		s.fail(fmt.Errorf("provision request: %w", err))
		return
	}
	s.provisioned.Add(1)
}

func (s *soak) terminate(ctx context.Context, id string) {
	defer s.termWG.Done()
	err := pgx.BeginFunc(ctx, s.hpool, func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminate(ctx, tx, s.ins, jobs.TerminateRequest{WorkspaceID: id, Actor: "bench"})
		return err
	})
	if err != nil {
		s.fail(fmt.Errorf("terminate request: %w", err))
	}
}

// arrived is the CP's provision hook: a tracked request's pickup ends here.
func (s *soak) arrived(ws string, at time.Time) {
	v, ok := s.pending.LoadAndDelete(ws)
	if !ok {
		return
	}
	start := v.(time.Time)
	s.mu.Lock()
	s.pickups = append(s.pickups, pickupSample{at: start.Sub(s.t0), d: at.Sub(start)})
	s.mu.Unlock()
}

// retriesAndSnoozes counts the run's jobs (warm-up included) that took
// more than one attempt, and those that snoozed: a terminate that waits
// for an in-flight provision snoozes, and a queue kept busy by snooze
// loops would show here, not in the depth alone.
func (s *soak) retriesAndSnoozes(ctx context.Context) (retried, snoozed int64, err error) {
	err = s.db.QueryRow(ctx, benchStore.Q(`
		SELECT count(*) FILTER (WHERE attempt > 1),
		       count(*) FILTER (WHERE coalesce((metadata->>'snoozes')::int, 0) > 0)
		FROM {schema}.river_job`)).Scan(&retried, &snoozed)
	if err != nil {
		return 0, 0, fmt.Errorf("count retries and snoozes: %w", err)
	}
	return retried, snoozed, nil
}

// lastLiveHeap is the heap the last GC marked live (settled just ran
// one). Beside HeapInuse, which also counts spans kept in use by a few
// survivors after a peak (thousands of handler goroutines waiting on
// their pool under load), it tells fragmentation from a leak.
func lastLiveHeap() uint64 {
	live := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(live)
	if live[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return live[0].Value.Uint64()
}

// openConns is how many connections both pools hold: each holds buffers
// and a statement cache, so a pool that opened more of them during the
// run shows as heap growth that is no leak.
func (s *soak) openConns() int32 {
	return s.wpool.Stat().TotalConns() + s.hpool.Stat().TotalConns()
}

// unpicked counts the recorded requests whose provision never reached
// the CP: none when the queue drained, and a failed drain's pickup
// windows leave them out.
func (s *soak) unpicked() int {
	n := 0
	s.pending.Range(func(_, _ any) bool { n++; return true })
	return n
}

// consume follows completions: a completed provision gets its terminate.
func (s *soak) consume(ctx context.Context) {
	defer close(s.consumeDone)
	for {
		var ev *river.Event
		select {
		case ev = <-s.events:
		case <-s.stopConsume:
			return
		}
		if ev == nil {
			return // subscription closed
		}
		switch {
		case ev.Kind == river.EventKindJobFailed:
			s.failures.Add(1)
		case ev.Job.Kind == jobs.KindProvision:
			var args struct {
				WorkspaceID string `json:"workspace_id"`
			}
			if err := json.Unmarshal(ev.Job.EncodedArgs, &args); err != nil {
				s.fail(fmt.Errorf("provision job args: %w", err))
				continue
			}
			s.provDone.Add(1)
			s.termWG.Add(1)
			go s.terminate(ctx, args.WorkspaceID)
		case ev.Job.Kind == jobs.KindTerminate:
			s.termDone.Add(1)
		}
		select {
		case s.progress <- struct{}{}:
		default:
		}
	}
}

// drain waits until every provision committed so far has run and its
// terminate has run too.
func (s *soak) drain(ctx context.Context) error {
	timeout := time.NewTimer(s.sc.SoakDrainTimeout)
	defer timeout.Stop()
	for s.termDone.Load() < s.provisioned.Load() {
		select {
		case <-s.progress:
		case <-timeout.C:
			return fmt.Errorf("drain: after %v, %d of %d provisions and %d terminates done",
				s.sc.SoakDrainTimeout, s.provDone.Load(), s.provisioned.Load(), s.termDone.Load())
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := s.err(); err != nil {
			return err
		}
	}
	// Every provision's completion was seen, so no terminate starts
	// after this; wait for the last ones' goroutines to return.
	s.termWG.Wait()
	return s.err()
}

// depthSample is one look at the queue and at how far the run got.
type depthSample struct {
	depth                 int64 // available + running jobs
	committed, prov, term int64 // requests committed, provisions and terminates completed, so far
}

// sampleDepth counts available and running jobs every SoakDepthEvery
// until the returned function is called, which returns the samples. Each
// sample is also logged with the worker pool's use, so a run that falls
// behind shows where while it runs.
func (s *soak) sampleDepth(ctx context.Context) func() []depthSample {
	var samples []depthSample
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.sc.SoakDepthEvery)
		defer t.Stop()
		for {
			var n int64
			err := s.db.QueryRow(ctx, benchStore.Q(`
				SELECT count(*) FROM {schema}.river_job WHERE state IN ('available', 'running')`)).Scan(&n)
			if err != nil {
				if ctx.Err() == nil {
					s.fail(fmt.Errorf("queue depth: %w", err))
				}
				return
			}
			d := depthSample{depth: n, committed: s.provisioned.Load(), prov: s.provDone.Load(), term: s.termDone.Load()}
			samples = append(samples, d)
			ws := s.wpool.Stat()
			s.env.logf("soak %v: depth %d, committed %d, provisions done %d, terminates done %d; worker pool %d/%d in use, %d of %d acquires empty",
				time.Since(s.t0).Round(time.Second), d.depth, d.committed, d.prov, d.term,
				ws.AcquiredConns(), ws.MaxConns(), ws.EmptyAcquireCount(), ws.AcquireCount())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() []depthSample {
		close(stop)
		<-done
		return samples
	}
}

// windows splits the pickups by commit time: the first and the last
// window of the run (30 s, or a quarter of a shorter run). A request
// never picked up (a drain that gave up) counts with what it waited until
// end, a lower bound: left out, it would flatter the window it was in.
func (s *soak) windows(d time.Duration, end time.Time) (first, last []time.Duration) {
	w := min(30*time.Second, d/4)
	s.mu.Lock()
	all := slices.Clone(s.pickups)
	s.mu.Unlock()
	s.pending.Range(func(_, v any) bool {
		start := v.(time.Time)
		all = append(all, pickupSample{at: start.Sub(s.t0), d: end.Sub(start)})
		return true
	})
	for _, p := range all {
		if p.at < w {
			first = append(first, p.d)
		}
		if p.at >= d-w {
			last = append(last, p.d)
		}
	}
	return first, last
}

// settled drops idle CP connections, collects garbage and waits for the
// goroutine count to stop moving, then returns it with HeapInuse.
func (s *soak) settled() (int, uint64) {
	if s.cp != nil {
		s.cp.dropIdleConns()
	}
	n, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(3 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // goroutines end without a signal to wait on
		m := runtime.NumGoroutine()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return n, ms.HeapInuse
}

func (s *soak) fail(err error) { s.firstErr.CompareAndSwap(nil, &err) }

func (s *soak) err() error {
	if p := s.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

func depthNote(every time.Duration, samples []depthSample) string {
	parts := make([]string, len(samples))
	for i, v := range samples {
		parts[i] = FormatValue(float64(v.depth))
	}
	return fmt.Sprintf("soak_queue_depth every %v (available+running jobs): %s", every, strings.Join(parts, " "))
}

// rateNote is the completion rate between samples, provisions/terminates
// per second: where a run falls behind, and whether it recovers.
func rateNote(every time.Duration, samples []depthSample) string {
	var parts []string
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		parts = append(parts, FormatValue(float64(b.prov-a.prov)/every.Seconds())+"/"+FormatValue(float64(b.term-a.term)/every.Seconds()))
	}
	return fmt.Sprintf("soak_done_per_s every %v (provisions/terminates completed per second): %s", every, strings.Join(parts, " "))
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
