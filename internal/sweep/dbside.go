package sweep

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// actorSweep marks timeline lines the sweep writes.
const actorSweep = "sweep"

// Outcomes of one action, counted after its transaction committed.
const (
	outEnqueued = "enqueued"
	outRetried  = "retried"
	outFailed   = "marked_failed"
	outChanged  = "changed"
	outDup      = "dup"
)

// sweepDB re-drives the rows the database itself shows as stuck, page by
// page in id order.
func (r *run) sweepDB(ctx context.Context) error {
	n, err := r.d.Store.CountWorkspaces(ctx, r.d.Pool)
	if err != nil {
		return err
	}
	r.res.ExaminedRows = n
	after := ""
	for {
		rows, err := r.d.Store.SuspectRows(ctx, r.d.Pool, r.s.ProvisioningDeadline, after, r.s.PageSize)
		if err != nil {
			return err
		}
		for _, row := range rows {
			r.redrive(ctx, row)
		}
		if len(rows) < r.s.PageSize {
			return r.sweepDeadInstanceTerminates(ctx)
		}
		after = rows[len(rows)-1].ID
	}
}

// sweepDeadInstanceTerminates re-runs discarded or cancelled
// instance_terminate jobs whose instance may still run. Only the
// workspace_terminate ones used to be re-driven: without a list endpoint
// nothing else would ever find such an instance again.
func (r *run) sweepDeadInstanceTerminates(ctx context.Context) error {
	after := ""
	for {
		dead, err := r.d.Store.DeadInstanceTerminates(ctx, r.d.Pool, obs.EvOrphanTerminated, after, r.s.PageSize)
		if err != nil {
			return err
		}
		for _, d := range dead {
			r.redriveInstanceTerminate(ctx, d)
		}
		if len(dead) < r.s.PageSize {
			return nil
		}
		after = dead[len(dead)-1].InstanceID
	}
}

// redriveInstanceTerminate retries one dead instance_terminate (the same
// job, not a twin), deciding again under its workspace's row lock. One
// whose workspace has no row here is only reported: the sweep re-ran the
// instance_terminates an operator had cancelled because a forced sweep
// queued them for another deployment's instances, undoing the Cancel past
// the breaker. The worker's own hand-offs always have a row.
func (r *run) redriveInstanceTerminate(ctx context.Context, d store.DeadInstanceTerminate) {
	if !d.RowExists {
		r.res.DeadTerminatesLeft++
		r.found(ClassInstanceTerminateNoRow, d.WorkspaceID, d.InstanceID, map[string]any{"job_id": d.JobID, "job_state": d.State})
		return
	}
	class := ClassInstanceTerminateDiscarded
	if d.State == string(rivertype.JobStateCancelled) {
		class = ClassInstanceTerminateCancelled
	}
	r.found(class, d.WorkspaceID, d.InstanceID, map[string]any{"job_id": d.JobID})
	if !r.takeDB() || r.o.DryRun {
		return
	}
	outcome := ""
	err := pgx.BeginFunc(ctx, r.d.Pool, func(tx pgx.Tx) error {
		if _, err := r.d.Store.Lock(ctx, tx, d.WorkspaceID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		still, err := r.d.Store.StillDeadInstanceTerminate(ctx, tx, obs.EvOrphanTerminated, d.JobID)
		if err != nil || !still {
			outcome = outChanged
			return err
		}
		if err := r.d.Jobs.Retry(ctx, tx, d.JobID); err != nil {
			return err
		}
		outcome = outRetried
		return r.d.Store.AppendEvent(ctx, tx, store.Event{WorkspaceID: d.WorkspaceID, Event: obs.EvOrphanFound, Actor: actorSweep,
			Fields: map[string]any{"instance_id": d.InstanceID, "class": class, "retried_job_id": d.JobID}})
	})
	r.count(outcome, err, "re-run instance_terminate "+d.InstanceID, true)
}

// EnvHookRerunLimit is how long after its generation began a provision
// discarded for a hook (ClassEnvHookDiscarded) is still re-run by the
// sweep. Past it the row is left provisioning and reported every sweep
// (ClassEnvHookGaveUp, an error-level sweep.env_hook_gave_up): a hook
// failing for a day is a host outage or a misconfiguration someone must
// fix, and re-running the job every sweep for ever only hid it. The row
// is not marked failed even then, because a hook error says nothing
// about the workspace and a failed row would tell the host's user
// "provisioning failed" for the host's own outage; once the hook works,
// an operator re-runs the job in River UI (or the host restarts the
// workspace).
const EnvHookRerunLimit = 24 * time.Hour

// EvEnvHookGaveUp is logged (error level) for each ClassEnvHookGaveUp row.
const EvEnvHookGaveUp = "sweep.env_hook_gave_up"

// hookDiscarded reports whether a dead job's last error is one of the
// hook errors (Deps.EnvHookError, Deps.HookMissingError).
func hookDiscarded(jobErr string, hookErrors []string) bool {
	for _, h := range hookErrors {
		if h != "" && strings.Contains(jobErr, h) {
			return true
		}
	}
	return false
}

// classifyRow names what is wrong with a row, or "". hookErrors are
// Deps.EnvHookError and Deps.HookMissingError.
func classifyRow(w store.SuspectRow, hookErrors []string) string {
	hookDead := w.Status == store.StatusProvisioning && w.PastDeadline && !w.LiveJob && w.DeadJobState == string(rivertype.JobStateDiscarded) &&
		hookDiscarded(w.DeadJobError, hookErrors)
	switch {
	case w.InstanceID != "" && (w.Status == store.StatusStopped || w.Status == store.StatusRemoved || w.Status == store.StatusFailed):
		return ClassStaleInstanceOnRow
	case w.Status == store.StatusStopping && !w.LiveJob && w.DeadJobState == string(rivertype.JobStateDiscarded):
		return ClassStoppingDiscarded
	case w.Status == store.StatusStopping && !w.LiveJob && w.DeadJobState == string(rivertype.JobStateCancelled):
		return ClassStoppingCancelled
	case w.Status == store.StatusStopping && !w.LiveJob:
		return ClassStoppingWithoutJob
	case hookDead && time.Since(w.StatusChangedAt) > EnvHookRerunLimit:
		return ClassEnvHookGaveUp
	case hookDead:
		return ClassEnvHookDiscarded
	case w.Status == store.StatusProvisioning && w.PastDeadline && !w.LiveJob:
		return ClassStuckProvisioning
	}
	return ""
}

// hookErrors are the job errors that mean a host hook, not the
// workspace, stopped a provision.
func (r *run) hookErrors() []string { return []string{r.d.EnvHookError, r.d.HookMissingError} }

// redrive acts on one suspect row, deciding again under its row lock.
func (r *run) redrive(ctx context.Context, row store.SuspectRow) {
	class := classifyRow(row, r.hookErrors())
	if class == "" {
		return
	}
	r.found(class, row.ID, row.InstanceID, map[string]any{"status": row.Status, "desired": row.Desired})
	if class == ClassEnvHookGaveUp {
		r.d.Log.Error().Str("evt", EvEnvHookGaveUp).Str("workspace_id", row.ID).Int64("job_id", row.DeadJobID).
			Int64("generation", row.Generation).Time("generation_began", row.StatusChangedAt).
			Msg("provision discarded for a host hook for too long: no longer re-run; the row stays provisioning until someone fixes the hook and re-runs the job")
		return
	}
	// Re-runs count against the cap like stops: a hook outage across a
	// fleet must not re-run thousands of provisions in one sweep.
	terminates := class != ClassStuckProvisioning
	if terminates && !r.takeDB() {
		return
	}
	if !terminates {
		r.res.Planned++
	}
	if r.o.DryRun {
		return
	}
	outcome := ""
	err := pgx.BeginFunc(ctx, r.d.Pool, func(tx pgx.Tx) error {
		cur, err := r.d.Store.LockSuspect(ctx, tx, r.s.ProvisioningDeadline, row.ID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && classifyRow(cur, r.hookErrors()) != class) {
			outcome = outChanged
			return nil
		}
		if err != nil {
			return err
		}
		outcome, err = r.apply(ctx, tx, class, cur)
		return err
	})
	r.count(outcome, err, "re-drive workspace "+row.ID, terminates)
}

// apply carries out class's remedy in tx, with a timeline line.
func (r *run) apply(ctx context.Context, tx pgx.Tx, class string, w store.SuspectRow) (string, error) {
	ev := store.Event{WorkspaceID: w.ID, Event: obs.EvTerminateRequested, Actor: actorSweep,
		Fields: map[string]any{"class": class, "from": w.Status, "instance_id": w.InstanceID}}
	outcome := outEnqueued
	switch class {
	case ClassStaleInstanceOnRow:
		// Keep what was asked (stopped or deleted); a failed row is not
		// restarted behind its owner's back.
		desired := store.DesiredStopped
		if w.Desired == store.DesiredDeleted || w.Status == store.StatusRemoved {
			desired = store.DesiredDeleted
		}
		if err := r.d.Store.MarkStopping(ctx, tx, w.ID, desired); err != nil {
			return "", err
		}
		ev.Fields["desired"] = desired
		fallthrough
	case ClassStoppingWithoutJob:
		id, err := r.d.Jobs.InsertTerminate(ctx, tx, w.ID)
		if err != nil {
			return "", err
		}
		ev.JobID = id
	case ClassEnvHookDiscarded:
		if err := r.d.Jobs.Retry(ctx, tx, w.DeadJobID); err != nil {
			return "", err
		}
		ev.Event = obs.EvProvisionRequested
		ev.Fields = map[string]any{"class": class, "retried_job_id": w.DeadJobID, "generation": w.Generation}
		outcome = outRetried
	case ClassStoppingDiscarded, ClassStoppingCancelled:
		if err := r.d.Jobs.Retry(ctx, tx, w.DeadJobID); err != nil {
			return "", err
		}
		ev.Fields["retried_job_id"] = w.DeadJobID
		outcome = outRetried
	case ClassStuckProvisioning:
		reason := fmt.Sprintf("stuck in provisioning for over %s with no live provision job (marked by the orphan sweep)",
			r.s.ProvisioningDeadline)
		ok, err := r.d.Store.MarkFailed(ctx, tx, w.ID, w.Generation, store.StatusProvisioning, reason)
		if err != nil || !ok {
			return outChanged, err
		}
		if r.d.OnFailed != nil {
			if err := r.d.OnFailed(ctx, tx, w.ID, w.Generation); err != nil {
				return "", err
			}
		}
		ev.Event, ev.Fields = obs.EvProvisionFailed, map[string]any{"class": class, "error": reason, "generation": w.Generation}
		outcome = outFailed
	}
	return outcome, r.d.Store.AppendEvent(ctx, tx, ev)
}

// count tallies a committed action. Actions that did not happen give
// their termination back to the cap.
func (r *run) count(outcome string, err error, what string, budgeted bool) {
	switch {
	case err != nil:
		r.failed(what, err)
	case outcome == outEnqueued:
		r.res.Enqueued++
		return
	case outcome == outRetried:
		r.res.Retried++
		return
	case outcome == outFailed:
		r.res.MarkedFailed++
		return
	case outcome == outChanged:
		r.res.SkippedChanged++
	case outcome == outDup:
		r.res.AlreadyQueued++
	}
	if budgeted {
		r.budget++
	}
	r.res.Planned--
}
