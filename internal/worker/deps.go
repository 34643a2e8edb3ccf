package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Deps is what the workers share.
type Deps struct {
	Pool     *pgxpool.Pool
	CP       cp.API
	Log      zerolog.Logger
	Metrics  *obs.Metrics // nil: no metrics
	Settings jobs.Settings
	// Env, when set, supplies each provision's env at call time instead
	// of the env stored beside the row (see EnvFunc).
	Env jobs.EnvFunc
	// OnOutcome, when set, tells the host's own row every outcome inside
	// the worker's transaction (see OutcomeFunc).
	OnOutcome jobs.OutcomeFunc

	// cpTimeout bounds one CP call (the CP client's Timeout, read by
	// NewWorkerClient): the env hook must leave that much of the job's
	// time to the call it feeds (envHookContext).
	cpTimeout time.Duration
}

// cpTimeoutOf is api's per-call bound, or cp.DefaultTimeout when api does
// not say (a test double).
func cpTimeoutOf(api cp.API) time.Duration {
	if t, ok := api.(interface{ Timeout() time.Duration }); ok && t.Timeout() > 0 {
		return t.Timeout()
	}
	return cp.DefaultTimeout
}

// ErrNotCompleted is returned when the completion found the job no longer
// running under this attempt (rescued, cancelled, or completed by a
// twin): the row change rolled back with it, as it must not commit for a
// job that did not complete (invariant "completion-checked commit",
// docs/design.md).
var ErrNotCompleted = errors.New("jobs: job is no longer running; its row change was rolled back")

// evJobNotCompleted is logged when a worker's completion was refused
// because River had moved the job on (rescued, cancelled, re-run).
const evJobNotCompleted = "job.not_completed"

// notCompletedError is ErrNotCompleted with the job's state as read after
// the refusal.
type notCompletedError struct {
	state               rivertype.JobState
	attempt, nowAttempt int
	// gone: the job row no longer exists (an operator deleted it after a
	// rescue): it will never run again, as a cancelled job will not.
	gone bool
}

func (e *notCompletedError) Error() string {
	if e.gone {
		return fmt.Sprintf("%v (the job of attempt %d is deleted)", ErrNotCompleted, e.attempt)
	}
	return fmt.Sprintf("%v (state %s, attempt %d of the job now %d)", ErrNotCompleted, e.state, e.attempt, e.nowAttempt)
}

func (e *notCompletedError) Is(target error) bool { return target == ErrNotCompleted }

// notCompleted reads why job's completion was refused: its state and
// attempt now ("" when the job is gone, as after an operator's delete).
func (d *Deps) notCompleted(ctx context.Context, job *rivertype.JobRow) error {
	state, attempt, err := d.st().JobState(ctx, d.Pool, job.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return errors.Join(&notCompletedError{attempt: job.Attempt}, err)
	}
	return &notCompletedError{state: rivertype.JobState(state), attempt: job.Attempt, nowAttempt: attempt,
		gone: errors.Is(err, store.ErrNotFound)}
}

// finalNotCompleted reports whether err is a refused completion of a job
// that will not run again under this attempt or a newer one (cancelled,
// discarded, already completed by a newer attempt, or deleted). A job
// whose state could not be read is not final: a retry may still own what
// the attempt could not record.
func finalNotCompleted(err error) bool {
	var nc *notCompletedError
	if !errors.As(err, &nc) {
		return false
	}
	return nc.gone || slices.Contains(riverjob.FinalizedStates(), nc.state)
}

// actorWorker marks timeline lines written by a worker.
const actorWorker = "worker"

// timeline collects the events of one transaction: each is written to
// workspace_events inside it, and logged only after it commits, so
// neither the table nor the log shows a change that rolled back.
type timeline struct {
	st    *store.Store
	lines []timelineLine
}

type timelineLine struct {
	level zerolog.Level
	ev    store.Event
}

// add writes ev in tx and queues its log line.
func (t *timeline) add(ctx context.Context, tx store.DB, level zerolog.Level, ev store.Event) error {
	ev = withActor(ev)
	if err := t.st.AppendEvent(ctx, tx, ev); err != nil {
		return err
	}
	t.queue(level, ev)
	return nil
}

// queue queues the log line of an event a combined statement wrote.
func (t *timeline) queue(level zerolog.Level, ev store.Event) {
	t.lines = append(t.lines, timelineLine{level: level, ev: withActor(ev)})
}

func withActor(ev store.Event) store.Event {
	if ev.Actor == "" {
		ev.Actor = actorWorker
	}
	return ev
}

// log writes the queued lines; call it after the commit.
func (t *timeline) log(l zerolog.Logger) {
	for _, line := range t.lines {
		logEvent(l, line.level, line.ev)
	}
}

// logEvent writes ev as one structured line, its instance id as the
// standard field.
func logEvent(l zerolog.Logger, level zerolog.Level, ev store.Event) {
	inst, _ := ev.Fields["instance_id"].(string)
	extra := map[string]any{}
	for k, v := range ev.Fields {
		if k != "instance_id" {
			extra[k] = v
		}
	}
	obs.Event(l, level, ev.Event, obs.Fields{
		WorkspaceID: ev.WorkspaceID, InstanceID: inst, JobID: ev.JobID, Attempt: ev.Attempt, Extra: extra,
	})
}

// jobEvent builds an event for job's workspace.
func jobEvent(job *rivertype.JobRow, workspaceID, name string, fields map[string]any) store.Event {
	return store.Event{WorkspaceID: workspaceID, Event: name, JobID: job.ID, Attempt: job.Attempt, Fields: fields}
}

// note writes one event outside any state change (e.g. provision.start)
// and logs it.
func (d *Deps) note(ctx context.Context, level zerolog.Level, ev store.Event) error {
	t := timeline{st: d.st()}
	if err := t.add(ctx, d.Pool, level, ev); err != nil {
		return err
	}
	t.log(d.Log)
	return nil
}

// complete runs change and completes job in one transaction, and rolls it
// all back unless River really moved the job to completed (invariant
// "completion-checked commit", docs/design.md). No CP call may happen
// inside change (invariant "no transaction across a CP call").
func complete[T river.JobArgs](ctx context.Context, d *Deps, job *river.Job[T], change func(pgx.Tx, *timeline) error) error {
	t := timeline{st: d.st()}
	// BEGIN rides with change's first batch (lazyTx); the completion rides
	// with COMMIT, and fails, rolling everything back, when the job no
	// longer runs under this attempt: a rescued job re-run while this
	// attempt was still out is running (or completed) under a newer
	// attempt, and completing it here would commit this stale attempt's
	// change and cut the newer one off.
	err := completeFunc(ctx, d.Pool, d.completionPrelude(), func(tx pgx.Tx) error { return change(tx, &t) }, func(b *pgx.Batch) {
		d.st().QueueCompleteJob(b, job.ID, job.Attempt, time.Now())
	})
	if ce := (*commitError)(nil); errors.As(err, &ce) {
		if ce.inLast && store.IsNotCompleted(ce.err) {
			err = d.notCompleted(ctx, job.JobRow)
		} else {
			// The pipeline's error says nothing of the job; an error
			// here (a lost connection) may follow a COMMIT that ran.
			err = fmt.Errorf("complete job %d: %w", job.ID, err)
		}
	}
	if errors.Is(err, ErrNotCompleted) {
		// River records no error for a job that is no longer running, so
		// without this line the refused completion leaves no trace.
		d.Log.Warn().Str("evt", evJobNotCompleted).Str("kind", job.Kind).Int64("job_id", job.ID).
			Int("attempt", job.Attempt).Err(err).Msg("job no longer running: its change was rolled back")
	}
	if err != nil {
		return err
	}
	if d.Settings.AsyncCompletionCommit() {
		markAsyncCompletion(ctx)
	}
	t.log(d.Log)
	return nil
}

// asyncCommitSQL makes a completing transaction's COMMIT return before
// its WAL is on disk. SET LOCAL: it ends with the transaction, so the
// pooled connection's next user (a provision.start note, River's fetch)
// commits as the server says.
const asyncCommitSQL = "set local synchronous_commit = off"

// completionPrelude is what a completing transaction runs right after
// BEGIN, in BEGIN's round trip: the opt-in COMPLETION_SYNCHRONOUS_COMMIT
// = off. It runs first so the host's outcome hook, in the same
// transaction, writes under the durability it will get. The trade is
// argued in docs/design.md ("Durability: asynchronous completion
// commits"): a lost commit loses the row change and the completion
// together (invariant "completion-checked commit"), and the job runs
// again (asyncCompletion).
func (d *Deps) completionPrelude() []string {
	if d.Settings.AsyncCompletionCommit() {
		return []string{asyncCommitSQL}
	}
	return nil
}

// snoozes reads River's own count of this job's snoozes from its metadata.
func snoozes(job *rivertype.JobRow) int {
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(job.Metadata, &m)
	return m.Snoozes
}

// waitOrFail snoozes job for d while its snooze budget lasts, and
// otherwise returns err so the attempt is spent and the backoff applies:
// snoozes are bounded (invariant "no silent stop", docs/design.md).
func (d *Deps) waitOrFail(job *rivertype.JobRow, wait time.Duration, err error) error {
	if snoozes(job) >= d.Settings.MaxSnoozes {
		return err
	}
	return river.JobSnooze(min(wait, d.Settings.SnoozeCap))
}

// cpRetry decides how a failed CP call is retried. Shutdown's cancel is
// passed through unchanged so River requeues without spending an attempt
// (invariant "no transaction across a CP call", docs/design.md);
// Retry-After and 401/403 become bounded snoozes; anything
// else spends an attempt under the kind's backoff.
func (d *Deps) cpRetry(job *rivertype.JobRow, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case cp.RetryAfter(err) > 0:
		return d.waitOrFail(job, cp.RetryAfter(err), err)
	case cp.IsAuth(err):
		// Loud on purpose: rotated or missing credentials stop every
		// provision and every stop until someone fixes them.
		d.Log.Error().Str("evt", "cp.auth_failed").Int64("job_id", job.ID).Str("kind", job.Kind).
			Err(err).Msg("CP rejected our credentials; retrying slowly")
		return d.waitOrFail(job, d.Settings.AuthSnooze, err)
	}
	return err
}

// st is the Store of d.Settings.Schema. NewWorkerClient and RunSweep
// refuse an invalid schema before any job runs, so the panic in MustFor is
// only reachable by a Deps built and used without either.
func (d *Deps) st() *store.Store { return store.MustFor(d.Settings.Schema) }
