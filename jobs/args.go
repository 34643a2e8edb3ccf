package jobs

import (
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/riverjob"
)

// Job kinds. Deploy workers that know a kind before anything inserts it: a
// River leader that does not know a kind discards its jobs. The values
// live in internal/riverjob, which the SQL in internal/store reads too.
const (
	KindProvision         = riverjob.KindProvision
	KindTerminate         = riverjob.KindTerminate
	KindInstanceTerminate = riverjob.KindInstanceTerminate
	KindOrphanSweep       = riverjob.KindOrphanSweep
)

// Queues. Terminates have their own so a stop never waits behind a
// 10,000-workspace import: invariant "stops never wait" (docs/design.md).
const (
	QueueProvision   = riverjob.QueueProvision
	QueueTerminate   = riverjob.QueueTerminate
	QueueMaintenance = riverjob.QueueMaintenance
)

// uniqueWhileLive is the unique window of every stop: the live states,
// deliberately without `completed`. River's default includes it, which
// would silently skip a second stop for the same workspace for the 24 h
// completed jobs are kept.
var uniqueWhileLive = riverjob.LiveStates()

// ProvisionArgs launches the instance of one generation of a workspace.
// Args hold ids only (invariant "ids-only args", docs/design.md): River
// UI shows them, so the env (which
// may hold secrets) is read from its table at call time instead.
type ProvisionArgs struct {
	WorkspaceID string `json:"workspace_id" river:"unique"`
	Generation  int64  `json:"generation" river:"unique"`
	// Nonce is minted with the generation; it keeps the unique key from
	// matching a job of a restored database's or a recreated row's
	// generation with the same number.
	Nonce string `json:"nonce" river:"unique"`
}

// Kind implements river.JobArgs.
func (ProvisionArgs) Kind() string { return KindProvision }

// InsertOpts: unique per generation, completed included, so a replayed
// request for a generation that already ran never launches it again.
func (ProvisionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       QueueProvision,
		MaxAttempts: DefaultSettings().ProvisionMaxAttempts,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: append([]rivertype.JobState{
			rivertype.JobStateCompleted}, uniqueWhileLive...)},
	}
}

// TerminateArgs stops whatever runs for a workspace and finishes the
// transition its row asks for (stopped, removed, or the next generation).
type TerminateArgs struct {
	WorkspaceID string `json:"workspace_id" river:"unique"`
}

// Kind implements river.JobArgs.
func (TerminateArgs) Kind() string { return KindTerminate }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (TerminateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       QueueTerminate,
		MaxAttempts: DefaultSettings().TerminateMaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueWhileLive},
	}
}

// InstanceTerminateArgs terminates one instance that no row should hold:
// a provision's answer that arrived after the row moved on, a duplicate,
// or an orphan found by the sweep.
type InstanceTerminateArgs struct {
	WorkspaceID string `json:"workspace_id" river:"unique"`
	InstanceID  string `json:"instance_id" river:"unique"`
}

// Kind implements river.JobArgs.
func (InstanceTerminateArgs) Kind() string { return KindInstanceTerminate }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (InstanceTerminateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       QueueTerminate,
		MaxAttempts: DefaultSettings().TerminateMaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueWhileLive},
	}
}
