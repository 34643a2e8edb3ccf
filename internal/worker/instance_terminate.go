package worker

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// InstanceTerminateWorker terminates one instance no row should hold.
// Before any CP call it re-checks, under the workspace's row lock (the
// lock recording and adoption take), that the instance is not recorded:
// an orphan found by a sweep may have been adopted since. While this job
// is live, provisions refuse to record or adopt the instance.
type InstanceTerminateWorker struct {
	policy[jobs.InstanceTerminateArgs]
}

// Work runs one attempt.
func (w *InstanceTerminateWorker) Work(ctx context.Context, job *river.Job[jobs.InstanceTerminateArgs]) error {
	if err := badArgs(job.Args.WorkspaceID, job.Args.InstanceID); err != nil {
		return err
	}
	job.Args.WorkspaceID = store.CanonicalID(job.Args.WorkspaceID)
	a := job.Args
	owned, err := w.recorded(ctx, a)
	if err != nil {
		return err
	}
	if owned {
		obs.Event(w.deps.Log, zerolog.InfoLevel, obs.EvOrphanSkipped, obs.Fields{
			WorkspaceID: a.WorkspaceID, InstanceID: a.InstanceID, JobID: job.ID, Attempt: job.Attempt,
			Extra: map[string]any{"reason": "recorded on its workspace"}})
		return nil
	}
	if err := stopInstance(ctx, w.deps.CP, a.WorkspaceID, a.InstanceID); err != nil {
		return w.deps.terminateFailed(ctx, job.JobRow, a.WorkspaceID, a.InstanceID, err)
	}
	err = complete(ctx, w.deps, job, func(tx pgx.Tx, t *timeline) error {
		return t.add(ctx, tx, zerolog.InfoLevel, jobEvent(job.JobRow, a.WorkspaceID, obs.EvOrphanTerminated,
			map[string]any{"instance_id": a.InstanceID}))
	})
	if err == nil && w.deps.Metrics != nil {
		w.deps.Metrics.OrphansTerminated.Inc()
	}
	return err
}

// recorded reports, under the row lock, whether the workspace holds the
// instance as its own.
func (w *InstanceTerminateWorker) recorded(ctx context.Context, a jobs.InstanceTerminateArgs) (bool, error) {
	var owned bool
	err := pgx.BeginFunc(ctx, w.deps.Pool, func(tx pgx.Tx) error {
		ws, err := w.deps.st().Lock(ctx, tx, a.WorkspaceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		owned = err == nil && ws.InstanceID == a.InstanceID
		return err
	})
	return owned, err
}
