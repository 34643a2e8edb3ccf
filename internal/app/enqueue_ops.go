package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/safetext"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/workerloop"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The operator's subcommands: re-running dead jobs and reading a
// workspace's history, so a night page needs neither SQL nor the code.
func init() {
	commands["retry"] = command{"re-queue jobs by id, or by kind and state (dead terminates after an outage)", runRetry}
	commands["timeline"] = command{"print a workspace's events, attempts and errors in time order", runTimeline}
}

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

func runRetry(ctx context.Context, cli CLI, args []string) error {
	var c common
	var f retryFlags
	set := config.New("enqueue retry", cli.Getenv)
	commonSettings(set, &c)
	set.FlagSet().Var(&f.ids, "job-id", "id of a job to re-queue, repeatable")
	set.String(&f.kind, "kind", "", "", "with --state: re-queue jobs of this kind (e.g. "+jobs.KindTerminate+")")
	set.String(&f.state, "state", "", "", "with --kind: discarded, cancelled, retryable or scheduled")
	set.Int(&f.limit, "limit", "", 100, 1, maxRetryLimit, "with --kind: re-queue at most this many, oldest first")
	if err := parseCmd(cli, set, &c, args, "retry --job-id N [--job-id N]...  |  retry --kind K --state S [--limit L]"); err != nil {
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

// utc formats a time for both outputs: UTC with milliseconds, so lines
// from different replicas and the database sort and compare by eye.
func utc(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// timelineLine is one entry of a workspace's history: a timeline row
// written with a state change, or a fact read from a River job row (its
// insert, each failed attempt's error, its final state).
type timelineLine struct {
	At      time.Time      `json:"at"`
	Event   string         `json:"event"`
	JobID   int64          `json:"job_id,omitempty"`
	Attempt int            `json:"attempt,omitempty"`
	Actor   string         `json:"actor,omitempty"`
	Fields  map[string]any `json:"fields,omitempty"`
}

type timelineOutput struct {
	Workspace *workspaceJSON `json:"workspace"`
	Events    []timelineLine `json:"events"`
}

type workspaceJSON struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Desired    string `json:"desired_state"`
	Generation int64  `json:"generation"`
	InstanceID string `json:"instance_id,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	Since      string `json:"status_since"`
}

func runTimeline(ctx context.Context, cli CLI, args []string) error {
	var c common
	var id string
	var asJSON bool
	set := config.New("enqueue timeline", cli.Getenv)
	commonSettings(set, &c)
	set.String(&id, "workspace-id", "", "", "workspace UUID (required)")
	set.Bool(&asJSON, "json", "", false, "print JSON for tools instead of text")
	if err := parseCmd(cli, set, &c, args, "timeline --workspace-id UUID [--json]"); err != nil {
		return err
	}
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("%w: --workspace-id: want a UUID, got %q", config.ErrUsage, id)
	}
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		out, err := readTimeline(ctx, tx, client, id)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cli.Out, out)
		}
		return printTimeline(cli.Out, id, out)
	})
}

// readTimeline merges the timeline table with the workspace's River jobs.
// The job rows matter most on a bad night: River's rescuer and retry
// policy change them without the worker writing a timeline line.
func readTimeline(ctx context.Context, tx pgx.Tx, client *jobs.Client, id string) (timelineOutput, error) {
	out := timelineOutput{Events: []timelineLine{}}
	ws, err := store.MustFor(client.Schema()).Get(ctx, tx, id)
	switch {
	case err == nil:
		out.Workspace = &workspaceJSON{ID: ws.ID, Status: ws.Status, Desired: ws.Desired, Generation: ws.Generation,
			InstanceID: ws.InstanceID, LastError: ws.LastError, Since: utc(ws.StatusChangedAt)}
	case !errors.Is(err, store.ErrNotFound):
		return out, err
	}
	events, err := store.MustFor(client.Schema()).Events(ctx, tx, id)
	if err != nil {
		return out, err
	}
	for _, ev := range events {
		out.Events = append(out.Events, timelineLine{At: ev.At, Event: ev.Event, JobID: ev.JobID,
			Attempt: ev.Attempt, Actor: ev.Actor, Fields: ev.Fields})
	}
	refs, err := store.MustFor(client.Schema()).JobsForWorkspace(ctx, tx, id)
	if err != nil {
		return out, err
	}
	if out.Workspace == nil && len(events) == 0 && len(refs) == 0 {
		return out, fmt.Errorf("%w %s", jobs.ErrUnknownWorkspace, id)
	}
	for _, ref := range refs {
		row, err := client.JobGetTx(ctx, tx, ref.ID)
		if errors.Is(err, rivertype.ErrNotFound) {
			continue // deleted by retention between the two reads
		}
		if err != nil {
			return out, fmt.Errorf("read job %d: %w", ref.ID, err)
		}
		out.Events = append(out.Events, jobLines(row)...)
	}
	sort.SliceStable(out.Events, func(i, j int) bool { return out.Events[i].At.Before(out.Events[j].At) })
	return out, nil
}

// jobLines turns a River job row into timeline lines.
func jobLines(row *rivertype.JobRow) []timelineLine {
	lines := []timelineLine{{At: row.CreatedAt, Event: "job.inserted", JobID: row.ID,
		Fields: map[string]any{"kind": row.Kind, "queue": row.Queue, "max_attempts": row.MaxAttempts}}}
	for _, e := range row.Errors {
		lines = append(lines, timelineLine{At: e.At, Event: "job.attempt_failed", JobID: row.ID, Attempt: e.Attempt,
			Fields: map[string]any{"kind": row.Kind, "error": e.Error}})
	}
	state := timelineLine{Event: "job." + string(row.State), JobID: row.ID, Attempt: row.Attempt,
		Fields: map[string]any{"kind": row.Kind}}
	switch {
	case row.FinalizedAt != nil:
		state.At = *row.FinalizedAt
	case row.State == rivertype.JobStateRunning && row.AttemptedAt != nil:
		state.At = *row.AttemptedAt
	default: // waiting: shown at the time it becomes runnable
		state.At = row.ScheduledAt
		state.Fields["next_run"] = utc(row.ScheduledAt)
	}
	return append(lines, state)
}

// maxTextError keeps one failed attempt to one readable line; --json has
// the whole message.
const maxTextError = 160

func printTimeline(w io.Writer, id string, out timelineOutput) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if ws := out.Workspace; ws != nil {
		fmt.Fprintf(tw, "workspace %s: %s since %s (desired %s, generation %d", id, ws.Status, ws.Since, ws.Desired, ws.Generation)
		if ws.InstanceID != "" {
			fmt.Fprintf(tw, ", instance %s", ws.InstanceID)
		}
		fmt.Fprintln(tw, ")")
	} else {
		fmt.Fprintf(tw, "workspace %s: no row (history only)\n", id)
	}
	for _, l := range out.Events {
		job := ""
		if l.JobID != 0 {
			job = fmt.Sprintf("job %d", l.JobID)
			if l.Attempt > 0 {
				job += fmt.Sprintf(" #%d", l.Attempt)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", utc(l.At), safetext.Value(l.Event), job, describe(l))
	}
	return tw.Flush()
}

// describe renders fields as sorted key=value pairs, actor first. Every
// value that holds a space or a rune that is not printable is Go-quoted
// (safetext.Value): a CP error or an actor carrying a newline, a C1
// control or a bidi override would otherwise forge timeline lines or
// reorder them on the operator's terminal.
func describe(l timelineLine) string {
	var parts []string
	if l.Actor != "" {
		parts = append(parts, "by "+safetext.Value(l.Actor))
	}
	keys := make([]string, 0, len(l.Fields))
	for k := range l.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fmt.Sprint(l.Fields[k])
		if r := []rune(v); k == "error" && len(r) > maxTextError {
			v = string(r[:maxTextError]) + "…"
		}
		parts = append(parts, safetext.Value(k)+"="+safetext.Value(v))
	}
	return strings.Join(parts, " ")
}
