package worker

import (
	"context"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/jobs"
)

// noteUnrecorded makes the CP's answer durable when an attempt could not
// record it (the host's outcome hook failed, a deadlock, a lost
// connection). Leaving the instance to the retry's adoption was not
// enough: the host's delete won the deadlock, the row was stopping when
// the retry ran, the retry skipped, and with a CP that has no list
// endpoint the instance ran on with no row and no job (invariant "every
// instance owned", docs/design.md). The
// note commits in its own transaction on its own context; a later attempt
// of the job that does not record the instance hands it off
// (handOffUnrecorded), and a stop that finds no recorded id stops it
// (TerminateWorker.stopUnrecorded). The note changes nothing for a retry
// of a row still pending: it adopts (or the CP replays) the instance as
// before. If the note cannot be written either, that adoption is all
// that is left, as before the note existed.
func (w *ProvisionWorker) noteUnrecorded(ctx context.Context, job *river.Job[jobs.ProvisionArgs], inst cp.Instance) error {
	nctx, cancel := ownContext(ctx)
	defer cancel()
	ev := jobEvent(job.JobRow, job.Args.WorkspaceID, obs.EvProvisionUnrecorded, map[string]any{
		"instance_id": inst.InstanceID, "generation": job.Args.Generation})
	if err := w.deps.note(nctx, zerolog.WarnLevel, ev); err != nil {
		return fmt.Errorf("note unrecorded instance %s: %w", inst.InstanceID, err)
	}
	return nil
}

// handOffUnrecorded hands each instance an earlier attempt of job noted
// as unrecorded to an instance_terminate, unless the row holds it
// (orphanIfUnrecorded). It runs where an attempt decides not to record:
// the row moved on (the skip), the generation failed for good. It runs
// on its own context: it may be these instances' last owner.
func (w *ProvisionWorker) handOffUnrecorded(ctx context.Context, job *river.Job[jobs.ProvisionArgs]) error {
	hctx, cancel := ownContext(ctx)
	defer cancel()
	ids, err := w.deps.unrecorded(hctx, job.Args.WorkspaceID, job.ID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := w.orphanIfUnrecorded(hctx, job, cp.Instance{InstanceID: id}); err != nil {
			return fmt.Errorf("hand off unrecorded instance %s: %w", id, err)
		}
	}
	return nil
}

// unrecorded returns the instance ids of the workspace's
// provision.unrecorded notes (only job jobID's unless jobID is 0) that
// the workspace has not stopped since.
func (d *Deps) unrecorded(ctx context.Context, workspaceID string, jobID int64) ([]string, error) {
	return d.st().UnstoppedNotes(ctx, d.Pool, workspaceID, jobID, obs.EvProvisionUnrecorded, stopEvents)
}
