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
