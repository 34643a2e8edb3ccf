package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/handoff"
	"github.com/molecule-ai/provision-worker/internal/jobtrace"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// ProvisionWorker launches (or adopts) the instance of one generation and
// records it. Of docs/design.md's invariants it upholds invariant "every
// instance owned" (every instance id the CP hands us is recorded or
// handed to an instance_terminate in the completing transaction),
// invariant "completion-checked commit" (completion and row change commit
// together) and invariant "no stale CP call" (a job whose row moved on
// makes no CP call).
type ProvisionWorker struct {
	policy[jobs.ProvisionArgs]
}

// Work runs one attempt.
func (w *ProvisionWorker) Work(ctx context.Context, job *river.Job[jobs.ProvisionArgs]) error {
	if err := badArgs(job.Args.WorkspaceID, ""); err != nil {
		return err
	}
	job.Args.WorkspaceID = store.CanonicalID(job.Args.WorkspaceID)
	a := job.Args
	start := withActor(jobEvent(job.JobRow, a.WorkspaceID, obs.EvProvisionStart, map[string]any{"generation": a.Generation}))
	// With the env hook set the stored env is not even read (EnvFunc).
	ps, err := w.deps.st().StartProvision(ctx, w.deps.Pool, a.WorkspaceID, a.Generation, a.Nonce, start, w.deps.Env == nil)
	ws := ps.Workspace
	if errors.Is(err, store.ErrNotFound) || (err == nil && !ps.Pending) {
		w.skip(job, ws)
		return w.handOffUnrecorded(ctx, job)
	}
	if err != nil {
		return err
	}
	logEvent(w.deps.Log, zerolog.InfoLevel, start)
	if w.deps.Env != nil && ps.StoredEnv {
		if err := w.noteStoredEnvIgnored(ctx, job, ws); err != nil {
			return err
		}
	}
	inst, adopted, err := w.launch(ctx, job, ws, ps.Env)
	if errors.Is(err, jobs.ErrEnvHook) {
		return w.envFailed(ctx, job, ws, err)
	}
	if err != nil {
		return w.failed(ctx, job, ws, err)
	}
	return w.record(ctx, job, inst, adopted)
}

func (w *ProvisionWorker) skip(job *river.Job[jobs.ProvisionArgs], ws store.Workspace) {
	obs.Event(w.deps.Log, zerolog.InfoLevel, obs.EvProvisionSkip, obs.Fields{
		WorkspaceID: job.Args.WorkspaceID, InstanceID: ws.InstanceID, JobID: job.ID, Attempt: job.Attempt,
		Extra: map[string]any{"generation": job.Args.Generation, "row_generation": ws.Generation, "status": ws.Status},
	})
}

// launch adopts a live instance when this is a retry (the previous
// attempt may have launched one whose answer was lost), else asks the CP
// to launch with the generation's frozen request and idempotency key.
// With the env hook set, the env is the hook's, asked for right before the
// CP call (not before an adoption, which needs none): the values live in
// this process for one call and are stored nowhere.
func (w *ProvisionWorker) launch(ctx context.Context, job *river.Job[jobs.ProvisionArgs], ws store.Workspace, env map[string]string) (cp.Instance, bool, error) {
	// River hands a job interrupted by shutdown (or snoozed) back with its
	// attempt number unchanged, but its attempted_by still grows with each
	// fetch: a re-fetched first attempt may have launched before it was
	// cancelled, and a CP that ignores Idempotency-Key would launch twice.
	ranBefore, err := w.ranBefore(ctx, job)
	if err != nil {
		return cp.Instance{}, false, err
	}
	if ranBefore {
		inst, found, err := w.adoptable(ctx, ws)
		switch {
		case errors.Is(err, cp.ErrListUnsupported):
			if w.deps.Settings.RefuseAmbiguousWithoutList {
				return cp.Instance{}, false, errRefuseAmbiguous
			}
		case err != nil:
			// Unknown is not empty: launching now could duplicate.
			return cp.Instance{}, false, fmt.Errorf("list before retrying provision: %w", err)
		case found:
			return inst, true, nil
		}
	}
	if w.deps.Env != nil {
		var err error
		if env, err = w.hostEnvBounded(ctx, ws.ID); err != nil {
			return cp.Instance{}, false, err
		}
	}
	inst, err := w.deps.CP.Start(ctx, cp.ProvisionRequest{
		WorkspaceID: ws.ID, Runtime: ws.Runtime, Tier: ws.Tier, PlatformURL: ws.PlatformURL, Env: env,
		IdempotencyKey: fmt.Sprintf("%s:%d", ws.ID, ws.Generation),
	})
	if err != nil {
		return cp.Instance{}, false, err
	}
	if !inst.Live() {
		return cp.Instance{}, false, fmt.Errorf("cp: provision answered instance %s in state %q", inst.InstanceID, inst.State)
	}
	return inst, false, nil
}

// hostEnvBounded asks the env hook within envHookContext's bound.
func (w *ProvisionWorker) hostEnvBounded(ctx context.Context, workspaceID string) (map[string]string, error) {
	hctx, cancel, ok := w.deps.envHookContext(ctx)
	defer cancel()
	if !ok {
		return nil, errEnvHookNoTime
	}
	return w.deps.hostEnv(hctx, workspaceID)
}

// ranBefore reports whether an earlier run of this job reached Work, so
// may have launched: a retry (attempt > 1) or a re-fetch (attempted_by
// grew) only counts when an earlier run wrote its provision.start. A job
// that a worker without the host's hooks fetched and snoozed before Work
// (hookGuard), or whose attempt that guard spent, never ran: reading it
// as a retry sent it down the adoption path, and with
// RefuseAmbiguousWithoutList on a CP without a list that failed the
// workspace without a single CP call.
func (w *ProvisionWorker) ranBefore(ctx context.Context, job *river.Job[jobs.ProvisionArgs]) (bool, error) {
	if job.Attempt <= 1 && len(job.AttemptedBy) <= 1 {
		return false, nil
	}
	n, err := w.deps.st().CountJobEvents(ctx, w.deps.Pool, job.Args.WorkspaceID, job.ID, obs.EvProvisionStart)
	if err != nil {
		return false, err
	}
	return n > 1, nil // this run wrote one
}

var errRefuseAmbiguous = errors.New("provision retry refused: the CP has no list endpoint to adopt from, and launching again could leak a duplicate")

// adoptable finds a live instance of the workspace that this generation
// may have launched: not one launched before the generation began, not
// one this workspace has already stopped, and not one an
// instance_terminate has condemned. EC2 is eventually consistent: for a
// few seconds after a restart's 2xx terminate, the list still showed the
// previous generation's instance as running, the retry adopted it, and
// the sweep then killed the instance this generation had launched as a
// "duplicate", leaving the row running on a terminated instance.
func (w *ProvisionWorker) adoptable(ctx context.Context, ws store.Workspace) (cp.Instance, bool, error) {
	stopped, err := w.deps.st().StoppedInstances(ctx, w.deps.Pool, ws.ID, stopEvents)
	if err != nil {
		return cp.Instance{}, false, err
	}
	var found cp.Instance
	err = eachLive(ctx, w.deps.CP, ws.ID, func(inst cp.Instance) (bool, error) {
		if reason := notThisGeneration(inst, ws, stopped); reason != "" {
			w.deps.Log.Info().Str("evt", evAdoptRefused).Str("workspace_id", ws.ID).Str("instance_id", inst.InstanceID).
				Str("reason", reason).Int64("generation", ws.Generation).Msg("listed instance not adopted")
			return false, nil
		}
		condemned, err := w.deps.st().LiveInstanceTerminates(ctx, w.deps.Pool, inst.InstanceID)
		if err != nil || len(condemned) > 0 {
			return false, err
		}
		found = inst
		return true, nil
	})
	return found, found.InstanceID != "", err
}

// evAdoptRefused is logged for a listed instance a retry did not adopt.
const evAdoptRefused = "provision.adopt_refused"

// stopEvents are the timeline events that confirm an instance stopped.
var stopEvents = obs.StopEvents

// notThisGeneration says why inst cannot be this generation's instance,
// or "". A provisioning row's status_changed_at is when its generation
// began (StartGeneration and Create set it; nothing else touches it while
// the row provisions with no instance).
func notThisGeneration(inst cp.Instance, ws store.Workspace, stopped map[string]bool) string {
	switch {
	case stopped[inst.InstanceID]:
		return "this workspace already stopped it"
	case !inst.LaunchedAt.IsZero() && !ws.StatusChangedAt.IsZero() && inst.LaunchedAt.Before(ws.StatusChangedAt):
		return "launched before this generation began"
	}
	return ""
}

// record commits the instance to its row, or, when the row moved on (a
// stop arrived, a newer generation began, another instance was recorded),
// hands it to an instance_terminate job, all in the completing
// transaction (invariants "every instance owned" and "completion-checked
// commit", docs/design.md). Once the CP has handed us an id, the
// job's context no longer governs: an operator's Cancel in River UI that
// landed after the CP's 201 cancelled the record, River marked the job
// cancelled, and nothing owned the instance. Both transactions run on
// their own bounded context instead (ownContext).
func (w *ProvisionWorker) record(ctx context.Context, job *river.Job[jobs.ProvisionArgs], inst cp.Instance, adopted bool) error {
	jobtrace.SpanInstance(ctx, inst.InstanceID)
	rctx, cancel := ownContext(ctx)
	defer cancel()
	err := w.recordTx(rctx, job, inst, adopted)
	if err != nil {
		// The answer outlives this attempt even when the row moves on
		// before the retry (noteUnrecorded).
		err = errors.Join(err, w.noteUnrecorded(ctx, job, inst))
	}
	if err == nil || (!finalNotCompleted(err) && runsAgain(ctx, job.JobRow)) {
		// A job that is merely retryable is left alone: its retry adopts
		// it, or hands it off from the note when it does not record it.
		return err
	}
	// The job was cancelled, discarded or finished by a newer attempt while
	// the CP answered, or this was its last attempt (or an operator
	// cancelled it): the rolled-back change was this instance's only
	// owner, so give it one now (invariant "every instance owned").
	hctx, hcancel := ownContext(ctx)
	defer hcancel()
	return errors.Join(err, w.orphanIfUnrecorded(hctx, job, inst))
}

// handOffTimeout bounds each transaction that owns an instance id the CP
// handed us (see ownContext). A rescue that lands meanwhile is safe:
// complete() refuses to complete a job that is no longer running.
const handOffTimeout = handoff.Timeout

// ownContext is ctx without its cancellation or deadline (the job's
// timeout, shutdown, an operator's Cancel) and with its own bound.
func ownContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), handOffTimeout)
}

// runsAgain reports whether River will run job again after this attempt
// returns an error: not on its last attempt, and not after an operator's
// Cancel (River then marks it cancelled, whatever the error).
func runsAgain(ctx context.Context, job *rivertype.JobRow) bool {
	return job.Attempt < job.MaxAttempts && !errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely)
}

// orphanIfUnrecorded hands inst to an instance_terminate unless its row
// holds it, under the row lock recording takes. It tries three times
// within ctx's bound: it is this instance's last owner.
func (w *ProvisionWorker) orphanIfUnrecorded(ctx context.Context, job *river.Job[jobs.ProvisionArgs], inst cp.Instance) error {
	var err error
	for try := range 3 {
		if err = w.orphanTx(ctx, job, inst); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100<<try) * time.Millisecond):
		}
	}
	return err
}

func (w *ProvisionWorker) orphanTx(ctx context.Context, job *river.Job[jobs.ProvisionArgs], inst cp.Instance) error {
	t := timeline{st: w.deps.st()}
	err := pgx.BeginFunc(ctx, w.deps.Pool, func(tx pgx.Tx) error {
		cur, err := w.deps.st().Lock(ctx, tx, job.Args.WorkspaceID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if cur.InstanceID == inst.InstanceID {
			return nil
		}
		return w.handOff(ctx, tx, &t, job, cur, inst)
	})
	if err == nil {
		t.log(w.deps.Log)
	}
	return err
}

func (w *ProvisionWorker) recordTx(ctx context.Context, job *river.Job[jobs.ProvisionArgs], inst cp.Instance, adopted bool) error {
	a := job.Args
	name := obs.EvProvisionStarted
	if adopted {
		name = obs.EvProvisionAdopted
	}
	ev := withActor(jobEvent(job.JobRow, a.WorkspaceID, name, map[string]any{
		"instance_id": inst.InstanceID, "state": inst.State, "generation": a.Generation}))
	return complete(ctx, w.deps, job, func(tx pgx.Tx, t *timeline) error {
		// One round trip: the lock, the checks below and, when they all
		// pass, the record and its event (store.LockAndRecord).
		rec, err := w.deps.st().LockAndRecord(ctx, tx, a.WorkspaceID, a.Generation, a.Nonce, inst.InstanceID, stopEvents, ev)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		cur := rec.Workspace
		switch {
		case rec.Recorded:
			t.queue(zerolog.InfoLevel, ev)
			return w.deps.outcome(ctx, tx, jobs.Outcome{WorkspaceID: a.WorkspaceID, Status: jobs.StatusRunning,
				InstanceID: inst.InstanceID, Generation: a.Generation})
		case cur.InstanceID == inst.InstanceID:
			return nil // already ours (a twin attempt recorded it)
		case rec.Stopped:
			return w.refuseStopped(ctx, tx, t, job, cur, inst)
		}
		// Condemned, or the row moved on (a stop, a newer generation).
		return w.handOff(ctx, tx, t, job, cur, inst)
	})
}

// refuseStopped answers a CP that handed this generation an instance the
// workspace already stopped: after a last attempt's failed record handed
// instance B to instance_terminate, an operator's Retry sent the same
// Idempotency-Key, the CP replayed B, and the row was left running on a
// terminated instance. The instance is handed off again (a no-op while an
// instance_terminate for it is live) and the generation's row marked
// failed, so the job completes: retrying would send the same key and get
// the same answer for ever. A restart begins a new generation and key.
func (w *ProvisionWorker) refuseStopped(ctx context.Context, tx pgx.Tx, t *timeline, job *river.Job[jobs.ProvisionArgs], cur store.Workspace, inst cp.Instance) error {
	if err := w.handOff(ctx, tx, t, job, cur, inst); err != nil {
		return err
	}
	a := job.Args
	if cur.Nonce != a.Nonce {
		return nil
	}
	reason := fmt.Sprintf("the CP answered instance %s, which this workspace already stopped (a replayed Idempotency-Key); restart to launch a new one", inst.InstanceID)
	ok, err := w.deps.st().MarkFailed(ctx, tx, a.WorkspaceID, a.Generation, store.StatusProvisioning, reason)
	if err != nil || !ok {
		return err
	}
	if err := w.deps.outcome(ctx, tx, failedOutcome(a.WorkspaceID, a.Generation)); err != nil {
		return err
	}
	return t.add(ctx, tx, zerolog.ErrorLevel, jobEvent(job.JobRow, a.WorkspaceID, obs.EvProvisionFailed,
		map[string]any{"error": reason, "generation": a.Generation, "permanent": true, "instance_id": inst.InstanceID}))
}

// failedOutcome is a provision failed for good, as the host's row shows
// it: the generic message only, never the CP's text.
func failedOutcome(workspaceID string, gen int64) jobs.Outcome {
	return jobs.Outcome{WorkspaceID: workspaceID, Status: jobs.StatusFailed, Message: jobs.GenericFailure, Generation: gen}
}

// handOff gives an instance the row cannot hold to instance_terminate.
func (w *ProvisionWorker) handOff(ctx context.Context, tx pgx.Tx, t *timeline, job *river.Job[jobs.ProvisionArgs], cur store.Workspace, inst cp.Instance) error {
	client := river.ClientFromContext[pgx.Tx](ctx)
	if _, err := client.InsertTx(ctx, tx, jobs.InstanceTerminateArgs{WorkspaceID: job.Args.WorkspaceID, InstanceID: inst.InstanceID}, nil); err != nil {
		return fmt.Errorf("insert instance_terminate: %w", err)
	}
	return t.add(ctx, tx, zerolog.WarnLevel, jobEvent(job.JobRow, job.Args.WorkspaceID, obs.EvProvisionStray, map[string]any{
		"instance_id": inst.InstanceID, "generation": job.Args.Generation,
		"row_generation": cur.Generation, "row_status": cur.Status}))
}

// failed decides what a failed attempt means. A permanent CP answer (400,
// 422: the frozen request will never succeed) or the last attempt marks
// the row failed with the CP's message; anything else is retried.
func (w *ProvisionWorker) failed(ctx context.Context, job *river.Job[jobs.ProvisionArgs], ws store.Workspace, cause error) error {
	if errors.Is(cause, context.Canceled) {
		return cause
	}
	permanent := cp.IsPermanent(cause) || errors.Is(cause, errRefuseAmbiguous)
	if !permanent && job.Attempt < job.MaxAttempts {
		obs.Event(w.deps.Log, zerolog.WarnLevel, obs.EvProvisionRetry, obs.Fields{
			WorkspaceID: ws.ID, JobID: job.ID, Attempt: job.Attempt, Extra: map[string]any{"error": cause.Error()}})
		return w.deps.cpRetry(job.JobRow, cause)
	}
	// On its own context, like record(): the CP call may have run the
	// job's context out, and a mark that cannot commit left the job
	// discarded with the row still provisioning.
	ctx, cancel := ownContext(ctx)
	defer cancel()
	t := timeline{st: w.deps.st()}
	err := pgx.BeginFunc(ctx, w.deps.Pool, func(tx pgx.Tx) error {
		ok, err := w.deps.st().MarkFailed(ctx, tx, ws.ID, ws.Generation, store.StatusProvisioning, cause.Error())
		if err != nil || !ok {
			return err
		}
		// A hook error rolls the mark back and is returned below: the job
		// retries (the next attempt asks the CP again) instead of being
		// cancelled with a row that is not failed.
		if err := w.deps.outcome(ctx, tx, failedOutcome(ws.ID, ws.Generation)); err != nil {
			return err
		}
		return t.add(ctx, tx, zerolog.ErrorLevel, jobEvent(job.JobRow, ws.ID, obs.EvProvisionFailed,
			map[string]any{"error": cause.Error(), "generation": ws.Generation, "permanent": permanent}))
	})
	if err != nil {
		return fmt.Errorf("mark failed after %v: %w", cause, err)
	}
	t.log(w.deps.Log)
	// The generation failed for good: what an earlier attempt could not
	// record is no one's now. Should the hand-off fail, the job runs again
	// (not cancelled), skips the failed row and hands off from there.
	if err := w.handOffUnrecorded(ctx, job); err != nil {
		return errors.Join(cause, err)
	}
	if permanent {
		return river.JobCancel(cause)
	}
	return cause
}
