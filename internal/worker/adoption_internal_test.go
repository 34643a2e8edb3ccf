package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// Each guard on adoption holds on its own: the stop record covers a CP
// whose clock disagrees with Postgres, the launch time covers a stop
// whose timeline line was pruned.
func TestNotThisGeneration_EachGuardRefusesOnItsOwn(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ws := store.Workspace{StatusChangedAt: began}
	for _, tc := range []struct {
		name     string
		launched time.Time
		stopped  bool
		refused  bool
	}{
		{"launched during the generation", began.Add(time.Second), false, false},
		{"launch time unknown", time.Time{}, false, false},
		{"launched before the generation", began.Add(-time.Second), false, true},
		{"stopped by this workspace, clock ahead", began.Add(time.Minute), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inst := cp.Instance{InstanceID: "i-0123456789abcdef0", LaunchedAt: tc.launched}
			reason := notThisGeneration(inst, ws, map[string]bool{inst.InstanceID: tc.stopped})
			require.Equal(t, tc.refused, reason != "", "reason %q", reason)
		})
	}
}
