package worker

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
	"github.com/molecule-ai/provision-worker/jobs"
)

// OrphanSweepWorker runs the sweep that re-drives the stops retries
// cannot see (docs/design.md#orphan-sweep). Sweeps never overlap: each holds
// a Postgres advisory lock, and one that finds it taken reports
// "another sweep running".
type OrphanSweepWorker struct {
	river.WorkerDefaults[jobs.OrphanSweepArgs]
	deps     *Deps
	settings sweep.Settings
}

// Timeout stays below River's rescue-after (checked by addSweep), so a
// slow sweep is not rescued and run twice.
func (w *OrphanSweepWorker) Timeout(*river.Job[jobs.OrphanSweepArgs]) time.Duration {
	return w.settings.Timeout
}

// Work runs one sweep and records its counts as the job's output.
func (w *OrphanSweepWorker) Work(ctx context.Context, job *river.Job[jobs.OrphanSweepArgs]) error {
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
func RunSweep(ctx context.Context, deps *Deps, client *jobs.Client, s jobs.SweepSettings, args jobs.OrphanSweepArgs) (sweep.Result, error) {
	return runSweep(ctx, deps, client, sweep.Settings(s), args)
}

func runSweep(ctx context.Context, deps *Deps, client *jobs.Client, s sweep.Settings, args jobs.OrphanSweepArgs) (sweep.Result, error) {
	st, err := store.For(deps.Settings.Schema)
	if err != nil {
		return sweep.Result{}, err
	}
	d := sweep.Deps{Pool: deps.Pool, Store: st, CP: deps.CP, Log: deps.Log, Metrics: deps.Metrics, EnvHookError: jobs.ErrEnvHook.Error(),
		HookMissingError: jobs.ErrHookMissing.Error()}
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

// SweepOutput decodes the counts a sweep job recorded (River keeps them in
// its metadata under "output"); false until the job recorded them.
func SweepOutput(job *rivertype.JobRow) (sweep.Result, bool) {
	raw := job.Output()
	if len(raw) == 0 {
		return sweep.Result{}, false
	}
	var res sweep.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return sweep.Result{}, false
	}
	return res, true
}

// sweepJobs inserts the sweep's jobs through a River client.
type sweepJobs struct{ client *jobs.Client }

func (j sweepJobs) InsertTerminate(ctx context.Context, tx pgx.Tx, workspaceID string) (int64, error) {
	res, err := j.client.InsertTx(ctx, tx, jobs.TerminateArgs{WorkspaceID: workspaceID}, nil)
	if err != nil {
		return 0, fmt.Errorf("insert terminate job: %w", err)
	}
	return res.Job.ID, nil
}

func (j sweepJobs) InsertInstanceTerminate(ctx context.Context, tx pgx.Tx, workspaceID, instanceID string) (int64, bool, error) {
	res, err := j.client.InsertTx(ctx, tx, jobs.InstanceTerminateArgs{WorkspaceID: workspaceID, InstanceID: instanceID}, nil)
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
func addSweep(cfg *river.Config, workers *river.Workers, deps *Deps, ss jobs.SweepSettings) error {
	s := sweep.Settings(ss).ForRescueAfter(cfg.RescueStuckJobsAfter).WithDefaults()
	if err := s.Validate(deps.Settings.ProvisionTimeout, cfg.RescueStuckJobsAfter); err != nil {
		return fmt.Errorf("sweep settings: %w", err)
	}
	river.AddWorker(workers, &OrphanSweepWorker{deps: deps, settings: s})
	cfg.Queues[jobs.QueueMaintenance] = river.QueueConfig{MaxWorkers: 1}
	cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(
		river.PeriodicInterval(s.Interval),
		func() (river.JobArgs, *river.InsertOpts) {
			return jobs.OrphanSweepArgs{}, &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: s.Interval}}
		},
		&river.PeriodicJobOpts{RunOnStart: true, ID: jobs.KindOrphanSweep},
	))
	return nil
}
