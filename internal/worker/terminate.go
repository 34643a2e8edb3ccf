package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// TerminateWorker stops a workspace. The row leaves stopping only after
// the CP confirmed every instance gone (invariant "confirmed stop"), in
// the transaction that completes the job (invariant "completion-checked
// commit"); every CP failure is retried with capped backoff and never
// read as success (invariant "no silent stop"). See docs/design.md.
type TerminateWorker struct {
	policy[jobs.TerminateArgs]
}

// Work runs one attempt.
func (w *TerminateWorker) Work(ctx context.Context, job *river.Job[jobs.TerminateArgs]) error {
	if err := badArgs(job.Args.WorkspaceID, ""); err != nil {
		return err
	}
	job.Args.WorkspaceID = store.CanonicalID(job.Args.WorkspaceID)
	ws, done, err := w.stoppingRow(ctx, job)
	if done || err != nil {
		return err
	}
	obs.Event(w.deps.Log, zerolog.InfoLevel, obs.EvTerminateStart, obs.Fields{
		WorkspaceID: ws.ID, InstanceID: ws.InstanceID, JobID: job.ID, Attempt: job.Attempt})
	var listed []string
	if ws.InstanceID != "" {
		err = stopInstance(ctx, w.deps.CP, ws.ID, ws.InstanceID)
	} else {
		listed, err = w.stopUnrecorded(ctx, job)
	}
	if err != nil {
		return w.deps.terminateFailed(ctx, job.JobRow, ws.ID, ws.InstanceID, err)
	}
	return w.finish(ctx, job, ws.InstanceID, listed)
}

// stoppingRow reads the row the job is to stop. done means there is
// nothing to stop and the job completed (completeIfNotStopping); a row
// that turned stopping meanwhile is read again.
func (w *TerminateWorker) stoppingRow(ctx context.Context, job *river.Job[jobs.TerminateArgs]) (store.Workspace, bool, error) {
	for range 3 {
		ws, err := w.deps.st().Get(ctx, w.deps.Pool, job.Args.WorkspaceID)
		if err == nil && ws.Status == store.StatusStopping {
			return ws, false, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return ws, false, err
		}
		if done, err := w.completeIfNotStopping(ctx, job); done || err != nil {
			return ws, done, err
		}
	}
	return store.Workspace{}, false, fmt.Errorf("workspace %s kept changing under the terminate", job.Args.WorkspaceID)
}

// completeIfNotStopping decides "nothing to stop" under the row lock
// that a stop request takes, and completes the job in that transaction.
// An operator's re-run of a completed terminate is a live job, so a new
// stop's insert is skipped as its duplicate: deciding on an unlocked read
// let the old job see the row not yet stopping, complete, and leave the
// new stop without a job until the sweep came by. Under the lock, either
// this job completes first (and the stop's insert makes a new job) or it
// sees the stop. done is false when the row is stopping now.
func (w *TerminateWorker) completeIfNotStopping(ctx context.Context, job *river.Job[jobs.TerminateArgs]) (done bool, err error) {
	err = complete(ctx, w.deps, job, func(tx pgx.Tx, _ *timeline) error {
		cur, err := w.deps.st().Lock(ctx, tx, job.Args.WorkspaceID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		case cur.Status == store.StatusStopping:
			return errStoppingNow
		}
		return nil
	})
	if errors.Is(err, errStoppingNow) {
		return false, nil
	}
	return err == nil, err
}

var errStoppingNow = errors.New("the workspace is stopping now")

// stopUnrecorded handles a stop with no recorded id: an attempted
// provision may still launch (or have launched, answer lost) an
// instance, so wait for it, then terminate what a failed record noted
// (noteUnrecorded: the provision job may never run again, cancelled or
// discarded, and without a list endpoint nothing else names it) and
// whatever the CP lists. It returns the ids it stopped, for the timeline:
// the next generation must never adopt them while the CP still lists them
// as running, and a later stop skips a noted instance stopped here.
func (w *TerminateWorker) stopUnrecorded(ctx context.Context, job *river.Job[jobs.TerminateArgs]) ([]string, error) {
	live, err := w.deps.st().LiveJobs(ctx, w.deps.Pool, jobs.KindProvision, job.Args.WorkspaceID)
	if err != nil {
		return nil, err
	}
	for _, p := range live {
		if !p.Attempted && p.State != string(rivertype.JobStateRunning) {
			continue // never attempted: the request cancelled it, or it will skip
		}
		if p.State != string(rivertype.JobStateRunning) {
			// Waiting out its backoff would delay the stop by minutes; run
			// it now: it sees the row stopping and hands off what it has.
			if _, err := river.ClientFromContext[pgx.Tx](ctx).JobRetry(ctx, p.ID); err != nil {
				return nil, fmt.Errorf("hurry provision job %d: %w", p.ID, err)
			}
		}
		obs.Event(w.deps.Log, zerolog.InfoLevel, obs.EvTerminateWait, obs.Fields{
			WorkspaceID: job.Args.WorkspaceID, JobID: job.ID, Attempt: job.Attempt,
			Extra: map[string]any{"provision_job_id": p.ID, "provision_state": p.State}})
		return nil, w.deps.waitOrFail(job.JobRow, w.deps.Settings.ProvisionWait, errProvisionInFlight)
	}
	// Instances the CP answered but no attempt recorded (noteUnrecorded):
	// without a list endpoint nothing else here knows of them.
	stopped, err := w.deps.unrecorded(ctx, job.Args.WorkspaceID, 0)
	if err != nil {
		return nil, err
	}
	for _, id := range stopped {
		if err := stopInstance(ctx, w.deps.CP, job.Args.WorkspaceID, id); err != nil {
			return nil, err
		}
	}
	noted := len(stopped)
	err = eachLive(ctx, w.deps.CP, job.Args.WorkspaceID, func(inst cp.Instance) (bool, error) {
		if slices.Contains(stopped[:noted], inst.InstanceID) {
			return false, nil
		}
		stopped = append(stopped, inst.InstanceID)
		return false, stopInstance(ctx, w.deps.CP, job.Args.WorkspaceID, inst.InstanceID)
	})
	if errors.Is(err, cp.ErrListUnsupported) {
		// Without the list nothing can be confirmed; the CP's own
		// reconciler must cover what a lost provision answer launched.
		w.deps.Log.Warn().Str("evt", obs.EvSweepNoList).Str("workspace_id", job.Args.WorkspaceID).
			Msg("CP has no list endpoint: stopping without confirming that nothing runs")
		return stopped, nil
	}
	return stopped, err
}

var errProvisionInFlight = errors.New("a provision for this workspace is still in flight")

// finish leaves stopping: stopped/removed, or the next generation when the
// workspace should run again, in the completing transaction.
func (w *TerminateWorker) finish(ctx context.Context, job *river.Job[jobs.TerminateArgs], stoppedID string, listed []string) error {
	id := job.Args.WorkspaceID
	fields := map[string]any{"instance_id": stoppedID}
	if len(listed) > 0 {
		fields["listed_instance_ids"] = listed // read back by StoppedInstances
	}
	stopped := withActor(jobEvent(job.JobRow, id, obs.EvProvisionStopped, fields))
	return complete(ctx, w.deps, job, func(tx pgx.Tx, t *timeline) error {
		// One round trip: the lock, the stop event and, unless the
		// workspace is to run again, the row's stop (store.LockAndFinishStop).
		cur, marked, err := w.deps.st().LockAndFinishStop(ctx, tx, id, stoppedID, stopped)
		if err != nil {
			return err
		}
		if cur.Status != store.StatusStopping || cur.InstanceID != stoppedID {
			return fmt.Errorf("workspace %s changed during terminate (status %s)", id, cur.Status)
		}
		fields["desired"] = cur.Desired // as the statement wrote it
		t.queue(zerolog.InfoLevel, stopped)
		if cur.Desired == store.DesiredRunning {
			return w.restart(ctx, tx, t, job, cur)
		}
		if !marked {
			return fmt.Errorf("workspace %s: mark stopped matched no row", id)
		}
		status := jobs.StatusStopped // finishStopSQL's choice, made on the locked row
		if cur.Desired == store.DesiredDeleted {
			status = jobs.StatusRemoved
		}
		return w.deps.outcome(ctx, tx, jobs.Outcome{WorkspaceID: id, Status: status, Generation: cur.Generation})
	})
}

// restart starts the next generation in the same transaction.
func (w *TerminateWorker) restart(ctx context.Context, tx pgx.Tx, t *timeline, job *river.Job[jobs.TerminateArgs], cur store.Workspace) error {
	if _, err := w.deps.st().ClearInstanceForStop(ctx, tx, cur.ID, cur.InstanceID); err != nil {
		return err
	}
	next, err := w.deps.st().StartGeneration(ctx, tx, cur.ID, cur.Generation, store.NewNonce(), nil)
	if err != nil {
		return err
	}
	res, err := river.ClientFromContext[pgx.Tx](ctx).InsertTx(ctx, tx,
		jobs.ProvisionArgs{WorkspaceID: next.ID, Generation: next.Generation, Nonce: next.Nonce}, nil)
	if err != nil {
		return fmt.Errorf("insert next provision: %w", err)
	}
	// The old instance is gone: the host clears it while the next one boots.
	if err := w.deps.outcome(ctx, tx, jobs.Outcome{WorkspaceID: cur.ID, Status: jobs.StatusProvisioning, Generation: next.Generation}); err != nil {
		return err
	}
	return t.add(ctx, tx, zerolog.InfoLevel, jobEvent(job.JobRow, cur.ID, obs.EvProvisionRequested,
		map[string]any{"generation": next.Generation, "action": jobs.ActionNextGeneration, "provision_job_id": res.Job.ID}))
}

// stopInstance terminates one instance and confirms a 404. A 404 is not
// proof (EC2 is eventually consistent, a proxy or a wrong route answers
// 404 too): the instance counts as gone only when its raw state says so,
// or the status endpoint says it is unknown and the list does not show
// it. `pending` is not gone.
func stopInstance(ctx context.Context, api cp.API, workspaceID, instanceID string) error {
	err := api.Stop(ctx, workspaceID, instanceID)
	if err == nil || cp.StatusCode(err) != 404 {
		return err
	}
	state, serr := api.Status(ctx, workspaceID, instanceID)
	switch {
	case serr == nil && (state == "terminated" || state == "shutting-down"):
		return nil
	case serr == nil:
		return fmt.Errorf("terminate answered 404 but the instance is %q: %w", state, err)
	case !cp.IsUnknownInstance(serr):
		return fmt.Errorf("terminate answered 404 and status could not confirm: %w", serr)
	}
	listed := false
	lerr := eachLive(ctx, api, workspaceID, func(inst cp.Instance) (bool, error) {
		listed = inst.InstanceID == instanceID
		return listed, nil
	})
	switch {
	case errors.Is(lerr, cp.ErrListUnsupported):
		return nil
	case lerr != nil:
		return fmt.Errorf("terminate answered 404 and the list could not confirm: %w", lerr)
	case listed:
		return fmt.Errorf("terminate answered 404 but the CP still lists %s as live: %w", instanceID, err)
	}
	return nil
}

// terminateFailed is a failed stop attempt: retried, never read as
// success. The last attempt writes terminate.dead and leaves the row in
// stopping with its instance id, for the sweep (or an operator in River
// UI) to re-drive.
func (d *Deps) terminateFailed(ctx context.Context, job *rivertype.JobRow, workspaceID, instanceID string, cause error) error {
	if errors.Is(cause, context.Canceled) {
		return cause
	}
	fields := map[string]any{"error": cause.Error(), "instance_id": instanceID, "max_attempts": job.MaxAttempts}
	if job.Attempt < job.MaxAttempts {
		if d.Metrics != nil {
			d.Metrics.TerminateRetries.Inc()
		}
		obs.Event(d.Log, zerolog.WarnLevel, obs.EvTerminateRetry, obs.Fields{
			WorkspaceID: workspaceID, InstanceID: instanceID, JobID: job.ID, Attempt: job.Attempt, Extra: map[string]any{"error": cause.Error()}})
		ret := d.cpRetry(job, cause)
		d.noteIfStuck(job, workspaceID, instanceID, ret)
		return ret
	}
	if err := d.note(ctx, zerolog.ErrorLevel, jobEvent(job, workspaceID, obs.EvTerminateDead, fields)); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}
