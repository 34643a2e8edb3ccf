package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// sweepPoll is how often --wait looks at the sweep job; the worker that
// runs it is another process, so there is no in-process signal to wait on.
const sweepPoll = 200 * time.Millisecond

// runSweep asks for one orphan sweep now, outside its schedule.
func runSweep(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var sweepArgs jobs.OrphanSweepArgs
	var wait bool
	var waitFor time.Duration
	set := config.New("enqueue sweep", cli.Getenv)
	commonSettings(set, &c)
	set.Bool(&sweepArgs.DryRun, "dry-run", "", false, "report what the sweep would do, change nothing")
	set.Bool(&sweepArgs.Force, "force", "", false, "act even when the breaker is open (strays exceed SWEEP_BREAKER_SHARE of the fleet)")
	set.Bool(&wait, "wait", "", false, "wait for the sweep to finish and print its counts")
	set.Duration(&waitFor, "wait-timeout", "", 10*time.Minute, "with --wait: give up after this long")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	return withClient(ctx, c, func(_ *pgxpool.Pool, client *jobs.Client) error {
		job, err := jobs.RequestSweep(ctx, client, sweepArgs)
		if err != nil {
			return err
		}
		if !wait {
			return printJSON(cli.Out, map[string]any{"job_id": job.ID, "job_kind": job.Kind, "job_state": job.State,
				"dry_run": sweepArgs.DryRun, "force": sweepArgs.Force})
		}
		return waitSweep(ctx, client, job.ID, waitFor, cli)
	})
}

// waitSweep polls the sweep job until it is finalized and prints its output.
func waitSweep(ctx context.Context, client *jobs.Client, id int64, limit time.Duration, cli CLI) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(sweepPoll)
	defer tick.Stop()
	for {
		job, err := client.JobGet(ctx, id)
		if err != nil {
			return fmt.Errorf("read sweep job %d: %w", id, err)
		}
		switch job.State {
		case rivertype.JobStateCompleted:
			res, ok := worker.SweepOutput(job)
			if !ok {
				return fmt.Errorf("sweep job %d completed without output", id)
			}
			return printJSON(cli.Out, res)
		case rivertype.JobStateDiscarded, rivertype.JobStateCancelled:
			return fmt.Errorf("sweep job %d ended %s (see River UI)", id, job.State)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("sweep job %d still %s after %s: is a worker running?", id, job.State, limit)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
