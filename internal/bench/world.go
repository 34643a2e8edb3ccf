package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Fake CP credentials: the bench runs the real auth path, as production.
const (
	benchOrg    = "org-bench"
	benchSecret = "bench-shared-secret"
	benchAdmin  = "bench-admin-token"
	benchAPIKey = "bench-admin-api-key"
)

// Production worker settings (the command's defaults, from jobs): the
// bench measures what a deployment runs, not a tuned lab setup.
const (
	prodWorkers       = jobs.DefaultProvisionWorkers
	prodFetchCooldown = jobs.DefaultFetchCooldown
	prodFetchPoll     = jobs.DefaultFetchPollInterval
	// River's own defaults, shown beside the production ones where they
	// trade latency for load.
	riverFetchCooldown = 100 * time.Millisecond
	riverFetchPoll     = time.Second
)

// fetchSettings are the two River settings that trade pickup latency for
// database load.
type fetchSettings struct {
	Cooldown, Poll time.Duration
}

var prodFetch = fetchSettings{Cooldown: prodFetchCooldown, Poll: prodFetchPoll}

// startCP starts an in-process fake CP and the production CP client
// (cp.New with the default HTTP client, as internal/app builds it).
func startCP(opts cpfake.Options) (*cpfake.Server, *cp.Client, error) {
	srv := cpfake.Start(fakeOptions(opts))
	api, err := newCPClient(srv.URL)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, api, nil
}

// fakeOptions adds the bench's credentials to opts and turns the fake's
// request log off.
func fakeOptions(opts cpfake.Options) cpfake.Options {
	opts.OrgID = benchOrg
	opts.SharedSecret, opts.AdminToken, opts.AdminAPIKey = benchSecret, benchAdmin, benchAPIKey
	opts.MaxRequestLog = -1 // a request log of 100k entries would be the bench's own heap
	return opts
}

// newCPClient is the production CP client for the fake at url.
func newCPClient(url string) (*cp.Client, error) {
	api, err := cp.New(cp.Config{
		BaseURL: url, OrgID: benchOrg, SharedSecret: benchSecret,
		AdminToken: benchAdmin, AdminAPIKey: benchAPIKey,
	})
	if err != nil {
		return nil, fmt.Errorf("cp client: %w", err)
	}
	return api, nil
}

// newWorker builds the production worker client (sweep off: figure 6
// measures it alone).
func newWorker(pool *pgxpool.Pool, api cp.API, fs fetchSettings) (*jobs.Client, error) {
	return newWorkerN(pool, api, fs, prodWorkers)
}

// newWorkerN is newWorker with n provision and n terminate workers.
func newWorkerN(pool *pgxpool.Pool, api cp.API, fs fetchSettings, n int) (*jobs.Client, error) {
	deps := &worker.Deps{
		CP: api, Log: zerolog.New(io.Discard).Level(zerolog.InfoLevel),
		Metrics: obs.NewMetrics(), Settings: jobs.DefaultSettings(),
	}
	return worker.NewWorkerClient(pool, deps, jobs.Options{
		ProvisionWorkers: n, TerminateWorkers: n,
		FetchCooldown: fs.Cooldown, FetchPollInterval: fs.Poll,
	})
}

// completions subscribes to job completions before the client starts, with
// a channel big enough that River never drops one (it drops events a slow
// subscriber has no room for).
func completions[T any](c *river.Client[T], n int) (<-chan *river.Event, func()) {
	return c.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: n + 1000,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed},
	})
}

// waitDone waits for n completed jobs of kind on events; failures are
// counted (they retry under backoff and slow the figure, which is honest).
// last is the latest finalized_at among them: River tells subscribers of
// a completion only when its batched completer flushes, up to 250 ms
// after the job finished (every 5th 50 ms tick while fewer than 100 wait),
// and a clock stopped by the event would add that flush's phase to every
// contender's time: a fixed cost that flattered the slower one.
func waitDone(ctx context.Context, events <-chan *river.Event, kind string, n int) (last time.Time, failures int, err error) {
	done := 0
	for done < n {
		select {
		case ev, ok := <-events:
			if !ok {
				return last, failures, fmt.Errorf("subscription closed after %d of %d %s jobs", done, n, kind)
			}
			if ev.Job.Kind != kind {
				continue
			}
			if ev.Kind != river.EventKindJobCompleted {
				failures++
				continue
			}
			done++
			if f := ev.Job.FinalizedAt; f != nil && f.After(last) {
				last = *f
			}
		case <-ctx.Done():
			return last, failures, fmt.Errorf("waiting for %s jobs (%d of %d done): %w", kind, done, n, ctx.Err())
		}
	}
	if last.IsZero() {
		return last, failures, fmt.Errorf("%d %s jobs completed with no finalized_at", n, kind)
	}
	return last, failures, nil
}

// newUUID returns a random (v4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// quantile is the nearest-rank quantile of ds, in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.5)
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

// heapSampler records the peak HeapInuse while it runs: a sweep that
// loads a whole side into memory shows up here even if it frees it
// before the end.
type heapSampler struct {
	stop           chan struct{}
	done           chan struct{}
	mu             sync.Mutex
	peak, peakLive uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			h.sample()
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	live := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(live)
	h.mu.Lock()
	h.peak = max(h.peak, m.HeapInuse)
	if live[0].Value.Kind() == metrics.KindUint64 {
		h.peakLive = max(h.peakLive, live[0].Value.Uint64())
	}
	h.mu.Unlock()
}

// Stop ends sampling and returns the peak HeapInuse in bytes.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	h.sample()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

// PeakLive is the peak live heap (what the last GC marked reachable) seen
// while sampling, valid after Stop. HeapInuse also holds garbage not yet
// collected, up to GOGC per cent of the live heap: beside a large live
// heap (the fake CP's fleet) that headroom dwarfs what a sweep holds.
func (h *heapSampler) PeakLive() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peakLive
}

// liveHeap is the live heap after a fresh GC.
func liveHeap() uint64 {
	runtime.GC()
	live := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(live)
	if live[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return live[0].Value.Uint64()
}

// liveHeapMetric is the heap the last GC marked live, in bytes.
const liveHeapMetric = "/gc/heap/live:bytes"

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// quietLogger drops River's info chatter, as the worker's own does.
func quietLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// median of vals (the mean of the middle two for an even count).
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
