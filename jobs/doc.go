// Package jobs is what request handlers import: the transactional enqueue
// API (RequestProvision, RequestTerminate, RequestRestart and their Many
// forms) that changes a workspace row and inserts the River job that
// carries the change out, in the caller's own transaction (the outbox),
// on pgx or database/sql; the read API (GetWorkspace, Status, Workspace);
// Import; the job args, kinds and queues; the settings; and the types of
// the host's hooks (EnvFunc, OutcomeFunc).
//
// The workers that carry the jobs out against the control plane live in
// internal/worker, and a host runs them through package provisioner. They
// are kept out of this package so that no exported name here shows an
// internal type (the CP client, the metrics): a host outside this module
// can name every type it is handed. provisioner's
// TestPublicAPI_UsesNoInternalType checks it.
package jobs
