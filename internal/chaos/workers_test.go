package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// Three worker processes on one database share the work: every job runs
// exactly once (one attempt, one CP effect), all three take part, and the
// periodic sweep is inserted by the leader alone. Pins River's locked
// fetch plus the unique job options (a twin job would show as a second
// launch or DELETE), and leader-only periodic jobs (three inserters would
// triple the sweeps).
func TestWorkers_ThreeProcessesWorkEachJobOnceAndOnlyLeaderSchedulesSweeps(t *testing.T) {
	const n = 60
	const interval = time.Second
	w := newWorld(t, cpfake.Options{Latency: 20 * time.Millisecond}, map[string]string{
		"SWEEP_ENABLED": "true", "SWEEP_INTERVAL": interval.String()})
	started := time.Now()
	for i := range 3 {
		w.startWorker(fmt.Sprintf("many-w%d", i))
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	w.enqueueAll("provision", ids, 6)
	_, err := w.drainWhere(`SELECT count(*) FROM workspaces WHERE status <> 'running'`, 2*time.Minute)
	require.NoError(t, err)
	w.enqueueAll("terminate", ids, 6)
	_, err = w.drain(2 * time.Minute)
	require.NoError(t, err)
	// The work can finish before a leader is elected; wait for the first
	// periodic sweep so the count below is about leadership, not timing.
	_, err = w.drainWhere(`SELECT CASE WHEN count(*) > 0 THEN 0 ELSE 1 END FROM river_job WHERE kind = 'orphan_sweep'`, time.Minute)
	require.NoError(t, err, "no sweep was scheduled")
	elapsed := time.Since(started)

	ctx := context.Background()
	var jobsN, once, workers int
	require.NoError(t, w.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE state = 'completed' AND attempt = 1),
			count(DISTINCT attempted_by[1])
		FROM river_job WHERE kind IN ('workspace_provision', 'workspace_terminate')`).Scan(&jobsN, &once, &workers))
	require.Equal(t, 2*n, jobsN)
	require.Equal(t, jobsN, once, "a job ran more than once")
	require.Equal(t, 3, workers, "not every worker process took part")
	st := w.cp.Stats()
	require.Equal(t, n, st.Launched)
	require.Equal(t, n, st.Terminates)
	require.Zero(t, st.Duplicates)
	require.Zero(t, w.cp.LiveCount())

	var sweeps int
	require.NoError(t, w.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'orphan_sweep'`).Scan(&sweeps))
	// One leader inserts one per interval plus one at its start; three
	// inserters would make about three times as many.
	maxSweeps := int(elapsed/interval) + 2
	require.Positive(t, sweeps, "no sweep was scheduled")
	require.LessOrEqual(t, sweeps, maxSweeps, "sweeps inserted by more than the leader")
}
