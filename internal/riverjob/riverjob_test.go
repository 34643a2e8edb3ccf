package riverjob

import (
	"slices"
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

// TestStates_PartitionRiverStates pins the state sets to River's own list:
// a state River adds (or a set edited here) must be placed on purpose,
// since a state in neither set would be a job no query waits for and no
// sweep re-drives.
func TestStates_PartitionRiverStates(t *testing.T) {
	all := append(LiveStates(), FinalizedStates()...)
	slices.Sort(all)
	want := rivertype.JobStates()
	slices.Sort(want)
	require.Equal(t, want, all, "live and finalized states together must be River's states, each once")
	for _, s := range DeadStates() {
		require.Contains(t, FinalizedStates(), s, "a dead state is finalized")
	}
	require.NotContains(t, DeadStates(), rivertype.JobStateCompleted)
}

func TestInList(t *testing.T) {
	for _, tc := range []struct {
		states []rivertype.JobState
		want   string
	}{
		{LiveStates(), `('available', 'pending', 'running', 'retryable', 'scheduled')`},
		{DeadStates(), `('discarded', 'cancelled')`},
		{[]rivertype.JobState{"it's"}, `('it''s')`},
	} {
		require.Equal(t, tc.want, InList(tc.states))
	}
}

// TestKindsAndQueues_Distinct: a duplicated value would make two kinds
// (or queues) one, and the worker would register a kind twice.
func TestKindsAndQueues_Distinct(t *testing.T) {
	for _, list := range [][]string{Kinds(), Queues()} {
		seen := map[string]bool{}
		for _, v := range list {
			require.NotEmpty(t, v)
			require.False(t, seen[v], "%q twice", v)
			seen[v] = true
		}
	}
}
