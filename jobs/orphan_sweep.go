package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// SweepSettings configure the periodic orphan sweep.
type SweepSettings struct {
	Interval time.Duration
}

// OrphanSweepArgs runs one sweep. DryRun reports without acting.
type OrphanSweepArgs struct {
	DryRun bool `json:"dry_run"`
	Force  bool `json:"force"`
}

// Kind implements river.JobArgs.
func (OrphanSweepArgs) Kind() string { return KindOrphanSweep }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (OrphanSweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance, MaxAttempts: 3}
}

// OrphanSweepWorker is a placeholder until the sweep lands.
type OrphanSweepWorker struct {
	river.WorkerDefaults[OrphanSweepArgs]
	deps *Deps
}

// Work runs one sweep.
func (w *OrphanSweepWorker) Work(ctx context.Context, job *river.Job[OrphanSweepArgs]) error {
	return nil
}

func addSweep(cfg *river.Config, workers *river.Workers, deps *Deps, s SweepSettings) error {
	river.AddWorker(workers, &OrphanSweepWorker{deps: deps})
	cfg.Queues[QueueMaintenance] = river.QueueConfig{MaxWorkers: 1}
	cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(
		river.PeriodicInterval(s.Interval),
		func() (river.JobArgs, *river.InsertOpts) { return OrphanSweepArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: KindOrphanSweep},
	))
	return nil
}
