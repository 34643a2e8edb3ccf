package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/jobs"
)

// KindEventPrune is the timeline pruner's job kind.
const KindEventPrune = riverjob.KindEventPrune

// EvEventsPruned is logged when a prune finishes, with its count.
const EvEventsPruned = "timeline.pruned"

// pruneTimeout bounds one prune job; half of RescueAfter when that is
// shorter, so the rescuer never starts a second prune beside a slow one.
const pruneTimeout = 2 * time.Minute

// EventPruneArgs runs one prune of the workspace timeline.
type EventPruneArgs struct{}

// Kind implements river.JobArgs.
func (EventPruneArgs) Kind() string { return KindEventPrune }

// pruneUniqueStates are the unfinished states: while one prune job is in
// any of them, inserting another is skipped (River's unique index), so
// two prunes never run at once, across replicas and leader changes, and a
// failed prune's retry never overlaps the next period's. Completed is
// left out, or the first prune would block every later one until River's
// cleaner removed it.
var pruneUniqueStates = riverjob.LiveStates()

// InsertOpts puts prunes on the maintenance queue, one unfinished at a
// time (pruneUniqueStates), whoever inserts them.
func (EventPruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: jobs.QueueMaintenance, MaxAttempts: 3,
		UniqueOpts: river.UniqueOpts{ByState: pruneUniqueStates}}
}

// PruneResult is a prune job's output: the events it deleted.
type PruneResult struct {
	Deleted int64 `json:"deleted"`
}

// EventPruneWorker deletes timeline events older than the retention, a
// batch at a time, until a batch comes back short (or the job's timeout
// ends it: the next period carries on).
type EventPruneWorker struct {
	river.WorkerDefaults[EventPruneArgs]
	deps     *Deps
	settings jobs.PruneSettings
	timeout  time.Duration
}

// Timeout stays below River's rescue-after (see addPrune).
func (w *EventPruneWorker) Timeout(*river.Job[EventPruneArgs]) time.Duration { return w.timeout }

// Work runs one prune and records how many events it deleted.
func (w *EventPruneWorker) Work(ctx context.Context, _ *river.Job[EventPruneArgs]) error {
	res, err := pruneEvents(ctx, w.deps, w.settings)
	if oerr := river.RecordOutput(ctx, res); oerr != nil {
		err = errors.Join(err, fmt.Errorf("record prune output: %w", oerr))
	}
	if err == nil {
		w.deps.Log.Info().Str("evt", EvEventsPruned).Int64("deleted", res.Deleted).
			Dur("retention", w.settings.Retention).Msg("timeline events pruned")
	}
	return err
}

func pruneEvents(ctx context.Context, deps *Deps, s jobs.PruneSettings) (PruneResult, error) {
	var res PruneResult
	st := deps.st() // the schema was checked when the client was built (PrepareDeps)
	for {
		n, err := st.PruneEvents(ctx, deps.Pool, s.Retention, s.BatchSize)
		res.Deleted += n
		if err != nil {
			return res, fmt.Errorf("prune timeline events: %w", err)
		}
		if n < int64(s.BatchSize) {
			return res, nil
		}
	}
}

// addPrune registers the pruner and its periodic schedule, as addSweep
// does the sweep's: inserted by the leader only (River does that), on
// start and every Interval.
func addPrune(cfg *river.Config, workers *river.Workers, deps *Deps, ps jobs.PruneSettings) error {
	s := ps.Or(jobs.DefaultPruneSettings())
	if err := s.Validate(); err != nil {
		return fmt.Errorf("prune settings: %w", err)
	}
	timeout := min(pruneTimeout, cfg.RescueStuckJobsAfter/2)
	river.AddWorker(workers, &EventPruneWorker{deps: deps, settings: s, timeout: timeout})
	cfg.Queues[jobs.QueueMaintenance] = river.QueueConfig{MaxWorkers: 1}
	cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(
		river.PeriodicInterval(s.Interval),
		func() (river.JobArgs, *river.InsertOpts) { return EventPruneArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: KindEventPrune},
	))
	return nil
}
