package store

import "github.com/molecule-ai/provision-worker/internal/riverjob"

// River's facts as the SQL fragments statements splice in, rendered once
// from internal/riverjob: no statement in this package spells a job kind
// or state by hand, so a kind or a state set changes in one place. Kinds
// a caller chooses (LiveJobs' kind) stay parameters.
var (
	// liveJobStates: `state IN` these and the job may still run.
	liveJobStates = riverjob.InList(riverjob.LiveStates())
	// deadJobStates: finalized without completing (discarded, cancelled).
	deadJobStates = riverjob.InList(riverjob.DeadStates())

	provisionKind         = riverjob.Text(riverjob.KindProvision)
	terminateKind         = riverjob.Text(riverjob.KindTerminate)
	instanceTerminateKind = riverjob.Text(riverjob.KindInstanceTerminate)
)

// unindexed wraps a river_job column (kind, state) in an expression no
// index serves, for the statements that find jobs by args @>: their only
// selective condition is the args containment, served by River's GIN
// index on args whatever the table holds. Left indexable, the planner
// may pick river_job_kind and river_job_prioritized_fetching_index
// instead (it did whenever the table's statistics were stale, as between
// autoanalyze runs): those match every job of the kind and every job
// version that was ever available or running until a vacuum removes the
// dead ones, so each lookup rechecked thousands of heap rows and its cost
// grew with the jobs run since the last vacuum (the soak's pickup p99
// grew sixfold in two minutes). Not for instance_terminate lookups: that
// kind is rare, so river_job_kind serves them best, where the GIN index
// must walk the posting list of the instance_id key, which every job
// naming an instance has (30 ms a lookup in the soak).
func unindexed(col string) string { return "(" + col + " || '')" }
