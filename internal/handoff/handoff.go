// Package handoff holds the bound on the transactions that own an
// instance id the CP handed a worker, shared by package jobs (which runs
// them) and package provisioner (whose Stop must outlast them).
package handoff

import "time"

// Timeout bounds each transaction that owns an instance id the CP handed
// a job (jobs' ownContext): the record, then the hand-off to an
// instance_terminate if the record failed.
const Timeout = 15 * time.Second

// CancelWindow is how long Stop waits, after cancelling the running jobs,
// before it closes the pool: a job cancelled right after the CP answered
// still records (Timeout), notes the answer when the record failed
// (Timeout: provision.unrecorded) and may then hand the instance off
// (Timeout again), all on the pool. A shorter window (it was 10 s) closed
// the pool under them, and the instance was owned by nothing.
const CancelWindow = 3 * Timeout
