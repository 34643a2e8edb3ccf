package worker

import "github.com/molecule-ai/provision-worker/jobs"

import (
	"context"

	"github.com/riverqueue/river"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// NewTerminateWorkerForTest builds the terminate worker over d, so a test
// can run one attempt at the moment a race needs it.
func NewTerminateWorkerForTest(d *Deps) *TerminateWorker {
	return &TerminateWorker{policy[jobs.TerminateArgs]{deps: d, stop: true}}
}

// FailProvisionForTest runs a provision's failure path, as Work does after
// a failed CP call, on ctx.
func FailProvisionForTest(ctx context.Context, d *Deps, job *river.Job[jobs.ProvisionArgs], ws store.Workspace, cause error) error {
	w := &ProvisionWorker{policy[jobs.ProvisionArgs]{deps: d}}
	return w.failed(ctx, job, ws, cause)
}
