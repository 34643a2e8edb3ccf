package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

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

// Sweep is figure 6: one dry-run orphan sweep over N workspace rows and N
// CP instances, a few per cent of them orphans. Its peak heap is the rise
// over the heap before the sweep, which already holds the in-process fake
// CP's fleet (a real worker does not); the process-wide peak is printed
// beside it.
func Sweep(ctx context.Context, env *Env) ([]Result, error) {
	pool, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	srv, api, err := startCP(cpfake.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	n := env.Scale.SweepN
	orphans, err := seedFleet(ctx, pool, srv, n)
	if err != nil {
		return nil, err
	}
	ins, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return nil, err
	}
	deps := &worker.Deps{Pool: pool, CP: api, Log: zerolog.New(io.Discard), Metrics: obs.NewMetrics(),
		Settings: jobs.DefaultSettings()}
	runtime.GC()
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
		return nil, fmt.Errorf("sweep: %w", err)
	}
	found := 0
	for _, c := range res.Orphans {
		found += c
	}
	// A sweep that skipped its CP side would look fast and prove nothing.
	if res.CPSide != "ok" || res.LiveInstances != n || found != orphans {
		return nil, fmt.Errorf("sweep did not cover the fleet: cp side %q, %d of %d live instances, %d of %d orphans",
			res.CPSide, res.LiveInstances, n, found, orphans)
	}
	const mb = 1 << 20
	return []Result{
		{"sweep_seconds", elapsed.Seconds(), "s"},
		{"sweep_peak_heap_mb", float64(peak-min(peak, before.HeapInuse)) / mb, "MB"},
		{"sweep_process_peak_heap_mb", float64(peak) / mb, "MB"},
		{"sweep_orphans_found", float64(found), "count"},
	}, nil
}

// seedFleet gives the fake CP n instances launched a day ago (older than
// any grace period) and records all but the orphans on running rows; the
// orphans' workspaces have no row, and as many stopped rows without an
// instance keep the table at n rows. It returns the number of orphans.
func seedFleet(ctx context.Context, pool *pgxpool.Pool, srv *cpfake.Server, n int) (int, error) {
	orphans := max(int(float64(n)*sweepOrphanShare), 1)
	launched := time.Now().Add(-24 * time.Hour)
	ids := make([]string, 0, n-orphans)
	insts := make([]string, 0, n-orphans)
	for i := range n {
		ws := newUUID()
		inst := srv.AddInstance(ws, cpfake.StateRunning, launched)
		if i >= orphans {
			ids = append(ids, ws)
			insts = append(insts, inst.InstanceID)
		}
	}
	if err := seedRows(ctx, pool, ids, insts, orphans); err != nil {
		return 0, err
	}
	return orphans, nil
}
