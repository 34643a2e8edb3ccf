package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/safetext"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

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

// runTimeline prints a workspace's history, read from the timeline and
// River's job rows, so a night page needs neither SQL nor the code.
func runTimeline(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var id string
	var asJSON bool
	set := config.New("enqueue timeline", cli.Getenv)
	commonSettings(set, &c)
	set.String(&id, "workspace-id", "", "", "workspace UUID (required)")
	set.Bool(&asJSON, "json", "", false, "print JSON for tools instead of text")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
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
