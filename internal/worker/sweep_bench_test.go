package worker_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// BenchmarkSweep100k sweeps 100,000 rows against 100,000 CP instances
// (1 % of them strays, under the breaker) and reports the time per sweep
// and the peak heap above the seeded baseline (the fake CP's fleet lives
// in this process too). Dry run, so every iteration sweeps the same fleet.
func BenchmarkSweep100k(b *testing.B) {
	const n, strays = 100_000, 1_000
	e := jobtest.New(b, jobtest.Config{NoStart: true})
	seedFleet(b, e, n, strays)
	s := jobs.SweepSettings{Grace: time.Minute}
	ctx := context.Background()
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	stop := sampleHeap(&peak)
	b.ResetTimer()
	for b.Loop() {
		res, err := worker.RunSweep(ctx, e.Deps, e.Insert, s, jobs.OrphanSweepArgs{DryRun: true})
		if err != nil || res.LiveInstances != n || res.Orphans["unknown_workspace"] != strays || res.CPSide != "ok" {
			b.Fatalf("sweep: %+v, %v", res, err)
		}
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(peak.Load()-min(peak.Load(), base))/(1<<20), "peak-heap-MB")
}

// seedFleet adds n old instances to the fake, records n-strays of them on
// running rows, and adds strays stopped rows without instances.
func seedFleet(b *testing.B, e *jobtest.Env, n, strays int) {
	old := time.Now().Add(-time.Hour)
	rows := make([]jobtest.Row, 0, n)
	for i := range n {
		ws := uuid.NewString()
		inst := e.CP.AddInstance(ws, cpfake.StateRunning, old).InstanceID
		if i < n-strays {
			rows = append(rows, jobtest.Row{ID: ws, Status: store.StatusRunning, InstanceID: inst})
		} else {
			rows = append(rows, jobtest.Row{Status: store.StatusStopped, Desired: store.DesiredStopped})
		}
	}
	if _, err := jobtest.SeedRows(context.Background(), e.Pool, rows); err != nil {
		b.Fatalf("seed rows: %v", err)
	}
	if _, err := e.Pool.Exec(context.Background(), `ANALYZE workspaces`); err != nil {
		b.Fatalf("analyze: %v", err)
	}
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap records the largest heap seen every millisecond until stop.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
