package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// stmtWindows times a pool's statements by statement and by window of
// the run (since start): a soak whose pickup degrades shows here which
// statement's latency grows, where a count of statements cannot. A batch
// is timed as one round trip named by its first statement.
type stmtWindows struct {
	queryCounter
	every time.Duration
	start atomic.Pointer[time.Time] // nil: not recording

	mu  sync.Mutex
	obs map[stmtWindowKey]*latencyHist
}

// latencyHist counts latencies in buckets growing by 10 % from 10 µs, a
// fixed size whatever the run's length: keeping every sample would grow
// the heap the soak judges by megabytes.
type latencyHist struct {
	n      int
	counts [histBuckets]int
}

const (
	histBuckets = 170 // 10 µs × 1.1^169 ≈ 100 s
	histBase    = 10 * time.Microsecond
	histGrowth  = 1.1
)

func (h *latencyHist) add(d time.Duration) {
	i := 0
	if d > histBase {
		i = min(int(math.Log(float64(d)/float64(histBase))/math.Log(histGrowth))+1, histBuckets-1)
	}
	h.counts[i]++
	h.n++
}

// quantile is the upper bound in ms of the bucket holding quantile q (at
// most 10 % above the true value).
func (h *latencyHist) quantile(q float64) float64 {
	if h == nil || h.n == 0 {
		return 0
	}
	rank := max(int(q*float64(h.n)+0.5), 1)
	seen := 0
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return float64(histBase) * math.Pow(histGrowth, float64(i)) / float64(time.Millisecond)
		}
	}
	return math.Inf(1)
}

type stmtWindowKey struct {
	window int
	stmt   string
}

type stmtWindowsStart struct {
	sql   string
	start time.Time
}

type stmtWindowsCtxKey struct{}

func newStmtWindows(every time.Duration) *stmtWindows {
	return &stmtWindows{every: every, obs: map[stmtWindowKey]*latencyHist{}}
}

// record starts the windows at t0.
func (s *stmtWindows) record(t0 time.Time) { s.start.Store(&t0) }

func (s *stmtWindows) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	ctx = s.queryCounter.TraceQueryStart(ctx, c, d)
	return context.WithValue(ctx, stmtWindowsCtxKey{}, stmtWindowsStart{sql: d.SQL, start: time.Now()})
}

func (s *stmtWindows) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	s.end(ctx)
}

func (s *stmtWindows) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	ctx = s.queryCounter.TraceBatchStart(ctx, c, d)
	name := "batch"
	if d.Batch != nil && len(d.Batch.QueuedQueries) > 0 {
		name = "batch: " + d.Batch.QueuedQueries[0].SQL
	}
	return context.WithValue(ctx, stmtWindowsCtxKey{}, stmtWindowsStart{sql: name, start: time.Now()})
}

func (s *stmtWindows) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	s.end(ctx)
}

func (s *stmtWindows) end(ctx context.Context) {
	st, ok := ctx.Value(stmtWindowsCtxKey{}).(stmtWindowsStart)
	t0 := s.start.Load()
	if !ok || t0 == nil || st.start.Before(*t0) {
		return
	}
	d := time.Since(st.start)
	key := stmtWindowKey{window: int(st.start.Sub(*t0) / s.every), stmt: shortSQL(st.sql)}
	s.mu.Lock()
	h := s.obs[key]
	if h == nil {
		h = &latencyHist{}
		s.obs[key] = h
	}
	h.add(d)
	s.mu.Unlock()
}

// shortSQL names a statement by its first 70 characters of words: River's
// queries start with their sqlc name comment.
func shortSQL(sql string) string {
	key := strings.Join(strings.Fields(sql), " ")
	if len(key) > 70 {
		key = key[:70]
	}
	return key
}

// notes returns one line per statement among the top n by total time:
// count, p50 and p99 per window.
func (s *stmtWindows) notes(prefix string, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := map[string]float64{} // ms, by bucket bounds
	last := 0
	for k, h := range s.obs {
		for i, c := range h.counts {
			total[k.stmt] += float64(c) * float64(histBase) * math.Pow(histGrowth, float64(i))
		}
		last = max(last, k.window)
	}
	stmts := make([]string, 0, len(total))
	for k := range total {
		stmts = append(stmts, k)
	}
	slices.SortFunc(stmts, func(a, b string) int { return cmp.Compare(total[b], total[a]) })
	var out []string
	for _, st := range stmts[:min(n, len(stmts))] {
		var parts []string
		for w := 0; w <= last; w++ {
			h := s.obs[stmtWindowKey{w, st}]
			n := 0
			if h != nil {
				n = h.n
			}
			parts = append(parts, fmt.Sprintf("%d×%.2f/%.1f", n, h.quantile(0.5), h.quantile(0.99)))
		}
		out = append(out, fmt.Sprintf("%s %q per %v (n×p50/p99 ms): %s", prefix, st, s.every, strings.Join(parts, " ")))
	}
	return out
}
