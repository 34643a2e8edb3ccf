// Package worker carries out the jobs package jobs inserts, against the
// control plane: the River workers, their retry policy, the hook calls
// and the orphan sweep's worker. It is internal because its wiring (Deps)
// holds the CP client and the metrics; hosts run it through package
// provisioner, which builds Deps and calls NewWorkerClient.
//
// One file per job kind, each Work naming the invariants of
// docs/design.md it upholds:
//
//   - workspace_provision (provision.go): launch or adopt the generation's
//     instance and record it, or hand it to an instance_terminate
//     (invariants "every instance owned", "completion-checked commit" and
//     "no stale CP call").
//   - workspace_terminate (terminate.go): stop the recorded instance, or
//     every live instance of the workspace, before leaving stopping
//     (invariants "confirmed stop" and "no silent stop").
//   - instance_terminate (instance_terminate.go): owned strays and orphans.
//   - orphan_sweep (orphan_sweep.go): re-drive what escaped.
package worker
