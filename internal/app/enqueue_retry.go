package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/workerloop"
	"github.com/molecule-ai/provision-worker/jobs"
)

// EvJobRetried is the timeline line of an operator's re-run, so the
// history shows why a dead stop came back to life.
const EvJobRetried = "job.retried"

// retryStates are the states `--state` accepts. Completed is left out on
// purpose: re-running a finished provision or stop is a new request, made
// with `enqueue provision|terminate`, not a retry.
var retryStates = map[string]bool{
	string(rivertype.JobStateDiscarded): true, string(rivertype.JobStateCancelled): true,
	string(rivertype.JobStateRetryable): true, string(rivertype.JobStateScheduled): true,
}

// maxRetryLimit is River's bound on one list page.
const maxRetryLimit = 10000

// notFoundError is bad input (exit 2): the whole retry is refused and
// nothing changes, so a typo in a script never half-applies.
type notFoundError struct{ id int64 }

func (e notFoundError) Error() string { return fmt.Sprintf("job %d not found", e.id) }
func (e notFoundError) Unwrap() error { return config.ErrUsage }

type retryFlags struct {
	ids   int64List
	kind  string
	state string
	limit int
}

// runRetry re-runs dead jobs (a stop that died in an outage) so a night
// page needs neither SQL nor the code.
func runRetry(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var f retryFlags
	set := config.New("enqueue retry", cli.Getenv)
	commonSettings(set, &c)
	set.FlagSet().Var(&f.ids, "job-id", "id of a job to re-queue, repeatable")
	set.String(&f.kind, "kind", "", "", "with --state: re-queue jobs of this kind (e.g. "+jobs.KindTerminate+")")
	set.String(&f.state, "state", "", "", "with --kind: discarded, cancelled, retryable or scheduled")
	set.Int(&f.limit, "limit", "", 100, 1, maxRetryLimit, "with --kind: re-queue at most this many, oldest first")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		rows, err := f.selectJobs(ctx, tx, client)
		if err != nil {
			return err
		}
		out, err := retryAll(ctx, tx, client, rows)
		if err != nil {
			return err
		}
		return printJSON(cli.Out, out)
	})
}

func (f retryFlags) check() error {
	switch {
	case len(f.ids) > 0 && (f.kind != "" || f.state != ""):
		return fmt.Errorf("%w: give --job-id, or --kind with --state, not both", config.ErrUsage)
	case len(f.ids) > 0:
		return nil
	case f.kind == "" || f.state == "":
		return fmt.Errorf("%w: give --job-id N, or both --kind and --state", config.ErrUsage)
	case !retryStates[f.state]:
		return fmt.Errorf("%w: --state: want discarded, cancelled, retryable or scheduled, got %q", config.ErrUsage, f.state)
	}
	return nil
}

// selectJobs reads every named job before touching any: one missing id
// refuses the whole command.
func (f retryFlags) selectJobs(ctx context.Context, tx pgx.Tx, client *jobs.Client) ([]*rivertype.JobRow, error) {
	if len(f.ids) == 0 {
		res, err := client.JobListTx(ctx, tx, river.NewJobListParams().Kinds(f.kind).
			States(rivertype.JobState(f.state)).OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(f.limit))
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		return res.Jobs, nil
	}
	rows := make([]*rivertype.JobRow, 0, len(f.ids))
	for _, id := range f.ids {
		row, err := client.JobGetTx(ctx, tx, id)
		if errors.Is(err, rivertype.ErrNotFound) {
			return nil, notFoundError{id}
		}
		if err != nil {
			return nil, fmt.Errorf("read job %d: %w", id, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// retriedJSON is one line of retry's output.
type retriedJSON struct {
	JobID       int64  `json:"job_id"`
	Kind        string `json:"kind"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	From        string `json:"from_state"`
	State       string `json:"state"`
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts"`
}

type retryOutput struct {
	Retried []retriedJSON `json:"retried"`
	Skipped []retriedJSON `json:"skipped_running,omitempty"`
}

// retryAll re-queues each job with River's own retry (a discarded job
// gets exactly one more attempt) and notes it on the workspace's
// timeline. A running job is left alone and reported: River does not
// touch it, and saying "retried" would be a lie.
func retryAll(ctx context.Context, tx pgx.Tx, client *jobs.Client, rows []*rivertype.JobRow) (retryOutput, error) {
	out := retryOutput{Retried: []retriedJSON{}}
	for _, before := range rows {
		ws := workspaceOf(before)
		line := retriedJSON{JobID: before.ID, Kind: before.Kind, WorkspaceID: ws, From: string(before.State)}
		if before.State == rivertype.JobStateRunning {
			line.State, line.Attempt, line.MaxAttempts = string(before.State), before.Attempt, before.MaxAttempts
			out.Skipped = append(out.Skipped, line)
			continue
		}
		after, err := client.JobRetryTx(ctx, tx, before.ID)
		if err != nil {
			return out, fmt.Errorf("retry job %d: %w", before.ID, err)
		}
		line.State, line.Attempt, line.MaxAttempts = string(after.State), after.Attempt, after.MaxAttempts
		out.Retried = append(out.Retried, line)
		if ws == "" {
			continue
		}
		err = store.MustFor(client.Schema()).AppendEvent(ctx, tx, store.Event{WorkspaceID: ws, Event: EvJobRetried, JobID: after.ID,
			Attempt: after.Attempt, Actor: "enqueue", Fields: map[string]any{"kind": after.Kind,
				"from_state": string(before.State), "max_attempts": after.MaxAttempts}})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// workspaceOf reads the workspace id from a job's args; "" for kinds
// without one.
func workspaceOf(row *rivertype.JobRow) string {
	ws, _ := jobIDs(row)
	return ws
}

// jobIDs reads the ids a job's args carry.
var jobIDs = workerloop.JobIDs

// int64List collects a repeated --job-id.
type int64List []int64

func (l *int64List) String() string { return "" }

func (l *int64List) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive job id, got %q", s)
	}
	*l = append(*l, n)
	return nil
}
