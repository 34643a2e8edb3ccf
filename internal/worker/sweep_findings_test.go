package worker_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A discarded or cancelled instance_terminate leaves its instance running,
// and without a list endpoint nothing else will ever find it: the sweep's
// database side must re-run that same job, unless the instance is known
// to be owned or gone.
func TestSweep_RerunsDeadInstanceTerminate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		state rivertype.JobState
		owned bool // recorded on its row: not a stray after all
		rerun bool
		class string
	}{
		{"discarded", rivertype.JobStateDiscarded, false, true, "instance_terminate_discarded"},
		{"cancelled", rivertype.JobStateCancelled, false, true, "instance_terminate_cancelled"},
		{"recorded on its row", rivertype.JobStateCancelled, true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true, Fake: cpfake.Options{NoList: true}})
			ctx := context.Background()
			id := uuid.NewString()
			inst := e.OldInstance(id)
			row := jobtest.Row{ID: id, Status: store.StatusStopped, Desired: store.DesiredStopped}
			if tc.owned {
				row.Status, row.InstanceID = store.StatusRunning, inst
			}
			e.SeedRows(row)
			dead, err := e.Insert.Insert(ctx, jobs.InstanceTerminateArgs{WorkspaceID: id, InstanceID: inst}, nil)
			require.NoError(t, err)
			setJobState(t, e, dead.Job.ID, tc.state, 0)

			res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

			if !tc.rerun {
				require.Zero(t, res.Retried)
				require.Equal(t, tc.state, jobState(t, e, dead.Job.ID).State)
				return
			}
			require.Equal(t, 1, res.Retried, "%+v", res)
			require.Equal(t, 1, res.Orphans[tc.class])
			e.Start()
			e.WaitFor("the dead instance_terminate re-run to completion", func() bool {
				return jobState(t, e, dead.Job.ID).State == rivertype.JobStateCompleted
			})
			require.False(t, liveIDs(e)[inst], "the instance of a dead instance_terminate still runs")
			require.Len(t, instanceTerminates(t, e, inst), 1, "the same job is re-run, no twin")
			again := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
			require.Zero(t, again.Retried, "a terminated instance is not re-run again")
		})
	}
}

// The database side runs first; stops that keep failing are re-driven
// every sweep. They must not spend the whole cap, or no stray is ever
// terminated.
func TestSweep_DatabaseSideCannotStarveTheCPSideOfTheCap(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	healthy := e.SeedHealthy(10)
	stray := e.OldInstance(healthy[0].ID)
	for range 3 {
		id := uuid.NewString()
		e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped, InstanceID: e.OldInstance(id)})
		dead, err := e.Insert.Insert(context.Background(), jobs.TerminateArgs{WorkspaceID: id}, nil)
		require.NoError(t, err)
		setJobState(t, e, dead.Job.ID, rivertype.JobStateDiscarded, 0)
	}
	s := testSweep()
	s.MaxTerminations = 2

	res := sweepNow(t, e, s, jobs.OrphanSweepArgs{})

	require.Equal(t, 3, res.Orphans["stopping_discarded"])
	require.Equal(t, 1, res.Orphans["duplicate"])
	require.Len(t, instanceTerminates(t, e, stray), 1, "the CP side got no share of the cap")
	require.Equal(t, 1, res.Retried)
	require.Equal(t, 1, res.Enqueued)
	require.Equal(t, 2, res.SkippedByCap)
}

// In a fleet of four, one stray is 25 %: over the share, but under the
// floor, so a duplicate is reclaimed without an operator. An instance of
// a workspace this database never had is not ours to reclaim that way: in
// a small fleet it still holds the breaker (a first deploy onto an
// existing fleet must not wipe it).
func TestSweep_SmallFleetStrayIsReclaimedWithoutForce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		workspace func(healthy []jobtest.Row) string
		reclaimed bool
	}{
		{"duplicate", func(h []jobtest.Row) string { return h[0].ID }, true},
		{"unknown workspace", func([]jobtest.Row) string { return uuid.NewString() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			healthy := e.SeedHealthy(3)
			stray := e.OldInstance(tc.workspace(healthy))

			res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

			require.Equal(t, !tc.reclaimed, res.BreakerOpen)
			if !tc.reclaimed {
				require.Empty(t, instanceTerminates(t, e, stray))
				return
			}
			require.Equal(t, "ok", res.CPSide)
			require.Equal(t, 1, res.Enqueued)
			require.Len(t, instanceTerminates(t, e, stray), 1)
		})
	}
}

// A second deployment on the same org id (or a database restored from
// before its workspaces existed) holds instances of workspaces this
// database never had. Under the share they used to be killed; from the
// floor on they open the breaker, flagged as a suspected second owner.
func TestSweep_SecondOwnerOfTheOrgIDOpensTheBreaker(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	e.SeedHealthy(20)
	for range 3 { // 3 of 23: 13 %, under the share
		e.OldInstance(uuid.NewString())
	}

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.True(t, res.BreakerOpen)
	require.True(t, res.SecondOwnerSuspected)
	require.Equal(t, "breaker_open", res.CPSide)
	require.Zero(t, res.Enqueued)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
	require.Contains(t, e.Logs.String(), `"evt":"sweep.second_owner_suspected"`)
}

// An operator cancelled the instance_terminates a forced sweep queued for
// workspaces this database never had (the other deployment's instances):
// the next sweep reports them and leaves them cancelled. It used to re-run
// them, past the second-owner breaker, killing what the operator saved.
func TestSweep_LeavesCancelledInstanceTerminateOfUnknownWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	e.SeedHealthy(20)
	var foreign []string
	for range 3 {
		foreign = append(foreign, e.OldInstance(uuid.NewString()))
	}
	sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{Force: true})
	its := e.JobsOfKind(jobs.KindInstanceTerminate)
	require.Len(t, its, 3)
	for _, j := range its { // operator: "wrong, that is the other deployment"
		_, err := e.Insert.JobCancel(ctx, j.ID)
		require.NoError(t, err)
	}

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Zero(t, res.Retried, "%+v", res)
	require.Equal(t, 3, res.DeadTerminatesLeft)
	require.Equal(t, 3, res.Orphans["instance_terminate_dead_no_row"])
	for _, j := range its {
		require.Equal(t, rivertype.JobStateCancelled, jobState(t, e, j.ID).State, "the operator's Cancel stands")
	}
	live := liveIDs(e)
	for _, inst := range foreign {
		require.True(t, live[inst])
	}
}
