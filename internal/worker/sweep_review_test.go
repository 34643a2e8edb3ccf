package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// TestSweep_RestoredDatabaseDoesNotWipeASmallFleet: a database restored
// from before both workspaces of a small fleet were restarted records A1
// and A2, which are gone, while B1 and B2 run. Listed beside a recorded
// instance, B1 and B2 look like duplicates; two strays are under the
// breaker's floor, and the sweep killed the whole fleet. A duplicate is
// now acted on only when the row's recorded instance is confirmed live;
// otherwise the row is stale and the instance is held for an operator.
func TestSweep_RestoredDatabaseDoesNotWipeASmallFleet(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	var live []string
	var ids []string
	for range 2 {
		id := uuid.NewString()
		e.SeedRows(jobtest.Row{ID: id, Status: store.StatusRunning, InstanceID: randomInstanceID()})
		live = append(live, e.OldInstance(id))
		ids = append(ids, id)
	}

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, 2, res.HeldDuplicates)
	require.Zero(t, res.Enqueued)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
	for _, id := range live {
		require.True(t, liveIDs(e)[id], "the instance that should run was held, not killed")
	}
	require.Contains(t, e.Logs.String(), `"evt":"sweep.stale_row"`)
	for _, id := range ids {
		require.Equal(t, store.StatusRunning, e.Workspace(id).Status)
	}
}

// TestSweep_QueuedStraysDoNotStarveANewStray: strays whose
// instance_terminate keeps failing were candidates again on every sweep,
// came first in list order, filled every slot under the cap, and a new
// stray was skipped by the cap for ever. Strays a live instance_terminate
// already holds are counted as already queued and take no slot.
func TestSweep_QueuedStraysDoNotStarveANewStray(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	h := e.SeedHealthy(20)
	for i := range 2 {
		s := e.CP.AddInstance(h[i].ID, cpfake.StateRunning, time.Now().Add(-3*time.Hour)).InstanceID
		j, err := e.Insert.Insert(context.Background(), jobs.InstanceTerminateArgs{WorkspaceID: h[i].ID, InstanceID: s}, nil)
		require.NoError(t, err)
		setJobState(t, e, j.Job.ID, rivertype.JobStateRetryable, time.Hour)
	}
	fresh := e.OldInstance(h[5].ID)
	s := testSweep()
	s.MaxTerminations = 2

	res := sweepNow(t, e, s, jobs.OrphanSweepArgs{})

	require.Equal(t, 2, res.AlreadyQueued)
	require.Equal(t, 1, res.Enqueued)
	require.Len(t, instanceTerminates(t, e, fresh), 1, "the new stray is queued")
}
