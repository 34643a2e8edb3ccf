package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/sweep"
)

// SweepSettings configure the orphan sweep: Interval (5m), Grace (15m),
// MaxTerminations (100), BreakerShare (0.2), BreakerMinStrays (3),
// ProvisioningDeadline (1h), PageSize (1000), DryRun, Timeout (2m). Zero
// values mean the defaults; Validate checks them against the job settings.
type SweepSettings = sweep.Settings

// SweepResult is one sweep's report (JSON), recorded as the job's output.
type SweepResult = sweep.Result

// DefaultSweepSettings are the production defaults.
func DefaultSweepSettings() SweepSettings { return sweep.DefaultSettings() }

// OrphanSweepArgs runs one sweep. DryRun reports without acting; Force
// acts on CP-side strays even when the breaker opened.
type OrphanSweepArgs struct {
	DryRun bool `json:"dry_run"`
	Force  bool `json:"force"`
}

// Kind implements river.JobArgs.
func (OrphanSweepArgs) Kind() string { return KindOrphanSweep }

// InsertOpts: no uniqueness here, so an operator's `enqueue sweep` always
// runs; the periodic schedule adds its own by-period uniqueness.
func (OrphanSweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance, MaxAttempts: 3}
}

// OrphanSweepWorker runs the sweep that re-drives the stops retries
// cannot see (design.md, "Orphan sweep"). Sweeps never overlap: each holds
// a Postgres advisory lock, and one that finds it taken reports
// "another sweep running".
type OrphanSweepWorker struct {
	river.WorkerDefaults[OrphanSweepArgs]
	deps     *Deps
	settings SweepSettings
}

// Timeout stays below River's rescue-after (checked by addSweep), so a
// slow sweep is not rescued and run twice.
func (w *OrphanSweepWorker) Timeout(*river.Job[OrphanSweepArgs]) time.Duration {
	return w.settings.Timeout
}

// Work runs one sweep and records its counts as the job's output.
func (w *OrphanSweepWorker) Work(ctx context.Context, job *river.Job[OrphanSweepArgs]) error {
	client := river.ClientFromContext[pgx.Tx](ctx)
	res, err := runSweep(ctx, w.deps, client, w.settings, job.Args)
	if oerr := river.RecordOutput(ctx, res); oerr != nil {
		err = errors.Join(err, fmt.Errorf("record sweep output: %w", oerr))
	}
	return err
}

// RunSweep runs one sweep outside a River worker (benchmarks, tools):
// deps.Pool and deps.CP must be set; client inserts the jobs the sweep
// hands work to and may be nil only on a dry run.
func RunSweep(ctx context.Context, deps *Deps, client *Client, s SweepSettings, args OrphanSweepArgs) (SweepResult, error) {
	return runSweep(ctx, deps, client, s, args)
}

func runSweep(ctx context.Context, deps *Deps, client *Client, s SweepSettings, args OrphanSweepArgs) (SweepResult, error) {
	st, err := store.For(deps.Settings.Schema)
	if err != nil {
		return SweepResult{}, err
	}
	d := sweep.Deps{Pool: deps.Pool, Store: st, CP: deps.CP, Log: deps.Log, Metrics: deps.Metrics, EnvHookError: ErrEnvHook.Error(),
		HookMissingError: ErrHookMissing.Error(),
		Kinds:            store.SweepKinds{Provision: KindProvision, Terminate: KindTerminate, InstanceTerminate: KindInstanceTerminate}}
	if client != nil {
		d.Jobs = sweepJobs{client: client}
	}
	if deps.OnOutcome != nil {
		d.OnFailed = func(ctx context.Context, tx pgx.Tx, workspaceID string, gen int64) error {
			return deps.outcome(ctx, tx, failedOutcome(workspaceID, gen))
		}
	}
	return sweep.Run(ctx, d, s, sweep.Options{DryRun: args.DryRun, Force: args.Force})
}

// RequestSweep inserts one manual sweep now (`enqueue sweep`). It has no
// uniqueness: an operator's sweep is never skipped as a duplicate of the
// periodic one (the advisory lock still keeps them from overlapping).
func RequestSweep(ctx context.Context, client *Client, args OrphanSweepArgs) (*rivertype.JobRow, error) {
	res, err := client.Insert(ctx, args, nil)
	if err != nil {
		return nil, fmt.Errorf("insert orphan sweep: %w", err)
	}
	return res.Job, nil
}

// SweepOutput decodes the counts a sweep job recorded (River keeps them in
// its metadata under "output"); false until the job recorded them.
func SweepOutput(job *rivertype.JobRow) (SweepResult, bool) {
	raw := job.Output()
	if len(raw) == 0 {
		return SweepResult{}, false
	}
	var res SweepResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return SweepResult{}, false
	}
	return res, true
}

// sweepJobs inserts the sweep's jobs through a River client.
type sweepJobs struct{ client *Client }

func (j sweepJobs) InsertTerminate(ctx context.Context, tx pgx.Tx, workspaceID string) (int64, error) {
	res, err := j.client.InsertTx(ctx, tx, TerminateArgs{WorkspaceID: workspaceID}, nil)
	if err != nil {
		return 0, fmt.Errorf("insert terminate job: %w", err)
	}
	return res.Job.ID, nil
}

func (j sweepJobs) InsertInstanceTerminate(ctx context.Context, tx pgx.Tx, workspaceID, instanceID string) (int64, bool, error) {
	res, err := j.client.InsertTx(ctx, tx, InstanceTerminateArgs{WorkspaceID: workspaceID, InstanceID: instanceID}, nil)
	if err != nil {
		return 0, false, fmt.Errorf("insert instance_terminate job: %w", err)
	}
	return res.Job.ID, res.UniqueSkippedAsDuplicate, nil
}

func (j sweepJobs) Retry(ctx context.Context, tx pgx.Tx, jobID int64) error {
	if _, err := j.client.JobRetryTx(ctx, tx, jobID); err != nil {
		return fmt.Errorf("retry job %d: %w", jobID, err)
	}
	return nil
}

// addSweep registers the worker and the periodic schedule: inserted by
// the leader only (River does that), on start and every Interval, unique
// by period so a leader restart inside a period does not add a second.
func addSweep(cfg *river.Config, workers *river.Workers, deps *Deps, s SweepSettings) error {
	s = s.ForRescueAfter(cfg.RescueStuckJobsAfter).WithDefaults()
	if err := s.Validate(deps.Settings.ProvisionTimeout, cfg.RescueStuckJobsAfter); err != nil {
		return fmt.Errorf("sweep settings: %w", err)
	}
	river.AddWorker(workers, &OrphanSweepWorker{deps: deps, settings: s})
	cfg.Queues[QueueMaintenance] = river.QueueConfig{MaxWorkers: 1}
	cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(
		river.PeriodicInterval(s.Interval),
		func() (river.JobArgs, *river.InsertOpts) {
			return OrphanSweepArgs{}, &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: s.Interval}}
		},
		&river.PeriodicJobOpts{RunOnStart: true, ID: KindOrphanSweep},
	))
	return nil
}
