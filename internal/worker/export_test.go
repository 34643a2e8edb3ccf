package worker

import "github.com/molecule-ai/provision-worker/jobs"

// NewTerminateWorkerForTest builds the terminate worker over d, so a test
// can run one attempt at the moment a race needs it.
func NewTerminateWorkerForTest(d *Deps) *TerminateWorker {
	return &TerminateWorker{policy[jobs.TerminateArgs]{deps: d, stop: true}}
}
