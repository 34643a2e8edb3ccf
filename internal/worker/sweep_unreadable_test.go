package worker_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// TestSweep_OneUnreadableInstanceDoesNotBlindTheSweep is issue 18's third
// path: one untagged instance (or one without launched_at, or launched a
// week from now) used to fail the whole list page, every sweep reported
// cp_side=unknown, and no stray anywhere was ever terminated. Now the
// unreadable ones are counted and left alone, and the rest is acted on.
func TestSweep_OneUnreadableInstanceDoesNotBlindTheSweep(t *testing.T) {
	t.Parallel()
	for _, d := range []cpfake.Dialect{cpfake.DialectFull, cpfake.DialectPlainGo} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{Dialect: d}})
			healthy := e.SeedHealthy(10)
			untagged := e.CP.AddInstance("", cpfake.StateRunning, time.Now().Add(-2*time.Hour)).InstanceID
			future := e.CP.AddInstance(uuid.NewString(), cpfake.StateRunning, time.Now().Add(7*24*time.Hour)).InstanceID
			stray := e.CP.AddInstance(healthy[0].ID, cpfake.StateRunning, time.Now().Add(-2*time.Hour)).InstanceID

			res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

			require.Equal(t, "ok", res.CPSide)
			require.Equal(t, 2, res.Unreadable)
			require.Equal(t, map[string]int{"duplicate": 1}, res.Orphans)
			e.WaitFor("the stray terminated", func() bool { return !liveIDs(e)[stray] })
			live := liveIDs(e)
			require.True(t, live[untagged], "an unreadable instance is never terminated")
			require.True(t, live[future], "an unreadable instance is never terminated")
			for _, r := range healthy {
				require.True(t, live[r.InstanceID])
			}
			require.Equal(t, 2.0, testutil.ToFloat64(e.Metrics.SweepUnreadable))
			require.InDelta(t, float64(time.Now().Unix()), testutil.ToFloat64(e.Metrics.SweepCPSeen), 60)
			require.Contains(t, e.Logs.String(), `"evt":"sweep.cp_unreadable_instance"`)
		})
	}
}
