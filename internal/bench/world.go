package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"runtime"
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
	opts.OrgID = benchOrg
	opts.SharedSecret, opts.AdminToken, opts.AdminAPIKey = benchSecret, benchAdmin, benchAPIKey
	opts.MaxRequestLog = -1 // a request log of 100k entries would be the bench's own heap
	srv := cpfake.Start(opts)
	api, err := cp.New(cp.Config{
		BaseURL: srv.URL, OrgID: benchOrg, SharedSecret: benchSecret,
		AdminToken: benchAdmin, AdminAPIKey: benchAPIKey,
	})
	if err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("cp client: %w", err)
	}
	return srv, api, nil
}

// newWorker builds the production worker client (sweep off: figure 6
// measures it alone).
func newWorker(pool *pgxpool.Pool, api cp.API, fs fetchSettings) (*jobs.Client, error) {
	deps := &worker.Deps{
		CP: api, Log: zerolog.New(io.Discard).Level(zerolog.InfoLevel),
		Metrics: obs.NewMetrics(), Settings: jobs.DefaultSettings(),
	}
	return worker.NewWorkerClient(pool, deps, jobs.Options{
		ProvisionWorkers: prodWorkers, TerminateWorkers: prodWorkers,
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
func waitDone(ctx context.Context, events <-chan *river.Event, kind string, n int) (failures int, err error) {
	done := 0
	for done < n {
		select {
		case ev, ok := <-events:
			if !ok {
				return failures, fmt.Errorf("subscription closed after %d of %d %s jobs", done, n, kind)
			}
			if ev.Job.Kind != kind {
				continue
			}
			if ev.Kind == river.EventKindJobCompleted {
				done++
			} else {
				failures++
			}
		case <-ctx.Done():
			return failures, fmt.Errorf("waiting for %s jobs (%d of %d done): %w", kind, done, n, ctx.Err())
		}
	}
	return failures, nil
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
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak uint64
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
	h.mu.Lock()
	h.peak = max(h.peak, m.HeapInuse)
	h.mu.Unlock()
}

// Stop ends sampling and returns the peak in bytes.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	h.sample()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// quietLogger drops River's info chatter, as the worker's own does.
func quietLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }
