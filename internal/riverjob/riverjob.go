// Package riverjob holds the facts about this project's River jobs that
// more than one package needs: the job kinds, the queues, and which River
// states count as live, dead or finalized. Each is written here once.
//
// It is a leaf (it imports only rivertype) on purpose: package jobs (the
// public API) imports store, so store could not learn a kind from jobs
// without an import cycle, and used to spell kinds and states in its SQL
// by hand. Now jobs re-exports these constants and store renders them
// into its statements (InList, Text), so changing a kind or a state set
// here changes every Go comparison and every SQL statement at once.
package riverjob

import (
	"strings"

	"github.com/riverqueue/river/rivertype"
)

// Job kinds. Deploy workers that know a kind before anything inserts it: a
// River leader that does not know a kind discards its jobs.
const (
	KindProvision         = "workspace_provision"
	KindTerminate         = "workspace_terminate"
	KindInstanceTerminate = "instance_terminate"
	KindOrphanSweep       = "orphan_sweep"
	KindEventPrune        = "event_prune"
)

// Kinds returns every kind the worker registers, for code that labels or
// counts per kind (metrics, gauges) and must not miss one.
func Kinds() []string {
	return []string{KindProvision, KindTerminate, KindInstanceTerminate, KindOrphanSweep, KindEventPrune}
}

// Queues. Terminates have their own so a stop never waits behind a
// 10,000-workspace import: invariant "stops never wait" (docs/design.md).
const (
	QueueProvision   = "provision"
	QueueTerminate   = "terminate"
	QueueMaintenance = "maintenance"
)

// Queues returns every queue the worker works.
func Queues() []string {
	return []string{QueueProvision, QueueTerminate, QueueMaintenance}
}

// LiveStates returns the River states from which a job may still run: a
// live job is one a transition must wait for, cancel or leave alone. It
// is also the unique window of a stop. A fresh slice each call, so no
// caller can change another's.
func LiveStates() []rivertype.JobState {
	return []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}
}

// FinalizedStates returns the states a job never leaves by itself: every
// River state that is not live.
func FinalizedStates() []rivertype.JobState {
	return []rivertype.JobState{rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded}
}

// DeadStates returns the finalized states of a job that did not complete:
// what the sweep re-drives and an operator can retry.
func DeadStates() []rivertype.JobState {
	return []rivertype.JobState{rivertype.JobStateDiscarded, rivertype.JobStateCancelled}
}

// InList renders states as a SQL list for `state IN ...`, e.g.
// ('available', 'pending'), so no statement spells a state by hand.
func InList(states []rivertype.JobState) string {
	quoted := make([]string, len(states))
	for i, s := range states {
		quoted[i] = Text(string(s))
	}
	return "(" + strings.Join(quoted, ", ") + ")"
}

// Text renders s as a SQL string literal (for a kind in a statement).
func Text(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
