package jobs

// NewTerminateWorkerForTest builds the terminate worker over d, so a test
// can run one attempt at the moment a race needs it.
func NewTerminateWorkerForTest(d *Deps) *TerminateWorker {
	return &TerminateWorker{policy[TerminateArgs]{deps: d, stop: true}}
}
