package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// sweepOrphanShare of the CP fleet belongs to no workspace row: a few per
// cent, under the breaker's 20 %, so the sweep does its full work.
const sweepOrphanShare = 0.02

// Sweep is figure 6: for each fleet size N of the scale, one dry-run
// orphan sweep over N workspace rows and N CP instances, a few per cent
// of them orphans, each on a fresh database and a fresh cmd/cpsim
// process. The fake CP runs out of process so the bench's heap is the
// sweep's: in process, its fleet (about 400 MB at 1M) was built and
// collected beside the sweep and swamped the figure. Each point's peak
// heap is the highest heap sampled during the sweep alone, above the
// heap just before it. Between successive sizes it prints the time and
// heap ratios: a sweep that scales at most linearly takes at most 10×
// the time for 10× the fleet.
func Sweep(ctx context.Context, env *Env) ([]Result, error) {
	bin, cleanup, err := buildCPSim(ctx)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var out []Result
	var prev *sweepPoint
	var points []string
	worst := 0.0
	for _, n := range env.Scale.SweepNs {
		p, err := sweepAt(ctx, env, bin, n)
		if err != nil {
			return nil, fmt.Errorf("sweep at %d: %w", n, err)
		}
		env.logf("sweep at %d: %.2f s, peak heap %.1f MB (live %.1f MB) above baseline (%.1f MB baseline); slowest statements: %s",
			n, p.seconds, p.peakMB, p.peakLiveMB, p.baseMB, p.slowest)
		l := sizeLabel(n)
		out = append(out,
			Result{"sweep_" + l + "_seconds", p.seconds, "s"},
			Result{"sweep_" + l + "_peak_heap_mb", p.peakMB, "MB"},
			Result{"sweep_" + l + "_peak_live_heap_mb", p.peakLiveMB, "MB"},
			Result{"sweep_" + l + "_orphans_found", float64(p.orphans), "count"},
		)
		if prev != nil {
			steps := math.Log10(float64(n) / float64(prev.n)) // 1 for 10×
			timeRatio := p.seconds / prev.seconds
			pl := "sweep_" + sizeLabel(prev.n) + "_to_" + l
			out = append(out,
				Result{pl + "_time_ratio", timeRatio, "x"},
				Result{pl + "_heap_ratio", p.peakMB / prev.peakMB, "x"},
			)
			worst = max(worst, math.Pow(timeRatio, 1/steps))
			points = append(points, fmt.Sprintf("x%.1f time, x%.1f heap", timeRatio, p.peakMB/prev.peakMB))
		}
		points = append(points, fmt.Sprintf("%s %.2f s %.1f MB", l, p.seconds, p.peakMB))
		prev = &p
	}
	if prev == nil {
		return nil, fmt.Errorf("no sweep sizes")
	}
	// One line a reader can take in: the points, and between them the
	// ratios (10× the fleet should cost at most 10× the time).
	env.notef("sweep points (time, peak heap above baseline; ratios between): %s", strings.Join(points, " -> "))
	out = append(out,
		Result{"sweep_largest_seconds", prev.seconds, "s"},
		Result{"sweep_largest_peak_heap_mb", prev.peakMB, "MB"},
		Result{"sweep_largest_peak_live_heap_mb", prev.peakLiveMB, "MB"},
	)
	if len(env.Scale.SweepNs) > 1 {
		// The worst step's time ratio scaled to a 10× step: ≤ 10 is at
		// most linear. Absent with one size, so the summary says
		// "missing" instead of judging a ratio of 0 as met.
		out = append(out, Result{"sweep_max_time_ratio_per_10x", worst, "x"})
	}
	return out, nil
}

// sweepPoint is one sweep's measurement.
type sweepPoint struct {
	n                          int
	seconds                    float64
	peakMB, peakLiveMB, baseMB float64
	orphans                    int
	slowest                    string // where the sweep's database time went
}

func sweepAt(ctx context.Context, env *Env, cpsim string, n int) (sweepPoint, error) {
	pool, err := env.NewDB(ctx)
	if err != nil {
		return sweepPoint{}, err
	}
	seed := uint64(n)
	proc, err := startCPSim(ctx, cpsim, n, seed)
	if err != nil {
		return sweepPoint{}, err
	}
	defer proc.Stop()
	api, err := newCPClient(proc.URL)
	if err != nil {
		return sweepPoint{}, err
	}
	orphans, err := seedFleetRows(ctx, pool, seed, n)
	if err != nil {
		return sweepPoint{}, err
	}
	ins, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return sweepPoint{}, err
	}
	// The sweep's own pool times its statements: where a slow sweep's
	// database time goes, by statement.
	timer := &queryTimer{}
	tpool, err := tracedPool(ctx, pool, timer)
	if err != nil {
		return sweepPoint{}, err
	}
	defer tpool.Close()
	deps := &worker.Deps{Pool: tpool, CP: api, Log: zerolog.New(io.Discard), Metrics: obs.NewMetrics(),
		Settings: jobs.DefaultSettings()}
	baseLive := liveHeap()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	heap := sampleHeap(5 * time.Millisecond)
	start := time.Now()
	// Forced: the seeded orphans belong to workspaces this database never
	// had, which open the breaker as a suspected second owner of the org
	// id; forcing makes the sweep walk and plan its CP side in full, and a
	// dry run acts on nothing either way.
	res, err := worker.RunSweep(ctx, deps, ins, jobs.DefaultSweepSettings(), jobs.OrphanSweepArgs{DryRun: true, Force: true})
	elapsed := time.Since(start)
	peak := heap.Stop()
	if err != nil {
		return sweepPoint{}, fmt.Errorf("sweep: %w", err)
	}
	found := 0
	for _, c := range res.Orphans {
		found += c
	}
	// A sweep that skipped its CP side would look fast and prove nothing.
	if res.CPSide != "ok" || res.LiveInstances != n || found != orphans {
		return sweepPoint{}, fmt.Errorf("sweep did not cover the fleet: cp side %q, %d of %d live instances, %d of %d orphans",
			res.CPSide, res.LiveInstances, n, found, orphans)
	}
	return sweepPoint{
		n: n, seconds: elapsed.Seconds(), orphans: found,
		peakMB: mb(peak - min(peak, before.HeapInuse)), baseMB: mb(before.HeapInuse),
		peakLiveMB: mb(heap.PeakLive() - min(heap.PeakLive(), baseLive)),
		slowest:    timer.top(3),
	}, nil
}

// sizeLabel names a fleet size in result lines: 10k, 100k, 1m, 300.
func sizeLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dm", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// seedFleetRows records all but the orphans of cpsim's fleet seed (the
// first members of cpfake.FleetMember(seed, 0..n-1)) on running rows;
// the orphans' workspaces have no row, and as many stopped rows without
// an instance keep the table at n rows. It returns the number of orphans.
//
// It writes on a connection of its own, closed before the sweep: pgx
// keeps a connection's buffers at the largest message it sent, and the
// seed's (about 60 MB at 1M) held in the pool doubled the heap's
// baseline, which let as much garbage pile up before the next GC.
func seedFleetRows(ctx context.Context, pool *pgxpool.Pool, seed uint64, n int) (int, error) {
	orphans := max(int(float64(n)*sweepOrphanShare), 1)
	ids := make([]string, 0, n-orphans)
	insts := make([]string, 0, n-orphans)
	for i := orphans; i < n; i++ {
		ws, inst := cpfake.FleetMember(seed, i)
		ids, insts = append(ids, ws), append(insts, inst)
	}
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return 0, fmt.Errorf("seed connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := seedRows(ctx, conn, ids, insts, orphans); err != nil {
		return 0, err
	}
	return orphans, nil
}
