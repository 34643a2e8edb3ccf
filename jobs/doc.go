// Package jobs is what request handlers import: the transactional enqueue
// API (RequestProvision, RequestTerminate, RequestRestart) that changes a
// workspace row and inserts the River job that carries the change out in
// the caller's own pgx transaction (the outbox), plus the workers that
// carry them out against the control plane.
//
// One file per job kind, each Work naming the invariant of
// shared/spec/design.md it upholds:
//
//   - workspace_provision (provision.go): launch or adopt the generation's
//     instance and record it, or hand it to an instance_terminate (0, 3, 4).
//   - workspace_terminate (terminate.go): stop the recorded instance, or
//     every live instance of the workspace, before leaving stopping (2, 6).
//   - instance_terminate (instance_terminate.go): owned strays and orphans.
//   - orphan_sweep (orphan_sweep.go): re-drive what escaped.
package jobs
