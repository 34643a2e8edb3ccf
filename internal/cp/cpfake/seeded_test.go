package cpfake

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// TestSeedFleet_AddsTheMembersAnotherProcessCanDerive: a seeded fleet is
// exactly FleetMember(seed, 0..n-1), with ids the CP client accepts, and
// seeding the same fleet twice fails without adding anything.
func TestSeedFleet_AddsTheMembersAnotherProcessCanDerive(t *testing.T) {
	t.Parallel()
	const n = 5000
	f := New(Options{})
	launched := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	require.NoError(t, f.SeedFleet(7, n, StateRunning, launched))
	f.mu.Lock()
	require.False(t, f.dirty, "sorted while seeding, not by the first list request a bench times")
	f.mu.Unlock()

	want := map[string]string{}
	for i := range n {
		ws, inst := FleetMember(7, i)
		want[inst] = ws
		u, err := uuid.Parse(ws)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), u.Version(), ws)
		require.Equal(t, ws, u.String(), "canonical form")
		require.True(t, cp.ValidInstanceID(inst), inst)
	}
	require.Len(t, want, n, "instance ids of one fleet never repeat")
	got := f.Instances()
	require.Len(t, got, n)
	for _, in := range got {
		require.Equal(t, want[in.InstanceID], in.WorkspaceID)
		require.Equal(t, StateRunning, in.State)
		require.True(t, in.LaunchedAt.Equal(launched))
	}
	require.Zero(t, f.Stats().Launched, "a seed is no launch")

	require.ErrorContains(t, f.SeedFleet(7, 1, StateRunning, launched), "taken")
	require.Len(t, f.Instances(), n, "a failed seed adds nothing")
	require.NoError(t, f.SeedFleet(8, 10, StateRunning, launched), "another seed is another fleet")
	require.Len(t, f.Instances(), n+10)
}
