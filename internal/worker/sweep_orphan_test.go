package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/sweep"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// testSweep: a grace far below the seeded instances' hour of age, and
// pages of 3 so every test walks several pages on both sides.
func testSweep() jobs.SweepSettings {
	return jobs.SweepSettings{Grace: time.Minute, PageSize: 3, ProvisioningDeadline: 30 * time.Minute}
}

func sweepNow(t *testing.T, e *jobtest.Env, s jobs.SweepSettings, args jobs.OrphanSweepArgs) sweep.Result {
	t.Helper()
	res, err := worker.RunSweep(context.Background(), e.Deps, e.Insert, s, args)
	require.NoError(t, err)
	return res
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func liveIDs(e *jobtest.Env) map[string]bool {
	out := map[string]bool{}
	for _, in := range e.CP.Live("") {
		out[in.InstanceID] = true
	}
	return out
}

// TestSweep_TerminatesInstanceOfUnknownWorkspaceOnlyWhenForced: our own
// leaks always have a row, so an instance of a workspace this database
// never had belongs to a second owner of the org id (or the database was
// restored): one such instance opens the breaker, however small its share,
// and only a forced sweep terminates it.
func TestSweep_TerminatesInstanceOfUnknownWorkspaceOnlyWhenForced(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	healthy := e.SeedHealthy(9)
	ghost := uuid.NewString()
	orphan := e.OldInstance(ghost)

	held := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, "breaker_open", held.CPSide)
	require.True(t, held.SecondOwnerSuspected)
	require.Zero(t, held.Enqueued)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{Force: true})

	require.Equal(t, map[string]int{"unknown_workspace": 1}, res.Orphans)
	require.Equal(t, 1, res.Enqueued)
	require.Equal(t, "ok", res.CPSide)
	require.Equal(t, 10, res.LiveInstances)
	e.WaitFor("orphan terminated", func() bool { return !liveIDs(e)[orphan] })
	live := liveIDs(e)
	for _, r := range healthy {
		require.True(t, live[r.InstanceID], "healthy instance %s must survive", r.InstanceID)
	}
	require.Contains(t, eventNames(t, e, ghost), "orphan.found")
	require.Equal(t, 2.0, counterValue(t, e.Metrics.OrphansFound.WithLabelValues("unknown_workspace")))
	require.Equal(t, 1.0, counterValue(t, e.Metrics.SweepsTotal.WithLabelValues("ok")))
}

func TestSweep_TerminatesDuplicateOfLiveWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	healthy := e.SeedHealthy(9)
	dup := e.OldInstance(healthy[0].ID)

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, map[string]int{"duplicate": 1}, res.Orphans)
	e.WaitFor("duplicate terminated", func() bool { return !liveIDs(e)[dup] })
	require.True(t, liveIDs(e)[healthy[0].InstanceID], "the recorded instance must survive")
	ws := e.Workspace(healthy[0].ID)
	require.Equal(t, store.StatusRunning, ws.Status)
	require.Equal(t, healthy[0].InstanceID, ws.InstanceID)
}

func TestSweep_StopsInstanceLeftOnRow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, desired, want string
	}{
		{store.StatusStopped, store.DesiredStopped, store.StatusStopped},
		{store.StatusRemoved, store.DesiredDeleted, store.StatusRemoved},
		{store.StatusFailed, store.DesiredRunning, store.StatusStopped}, // never restarted by the sweep
	} {
		t.Run(tc.status, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{})
			e.SeedHealthy(5)
			id := uuid.NewString()
			inst := e.OldInstance(id)
			e.SeedRows(jobtest.Row{ID: id, Status: tc.status, Desired: tc.desired, InstanceID: inst})

			res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

			require.Equal(t, map[string]int{"stale_instance_on_row": 1}, res.Orphans)
			require.Equal(t, 1, res.Enqueued)
			ws := e.WaitStatus(id, tc.want)
			require.Empty(t, ws.InstanceID)
			require.False(t, liveIDs(e)[inst])
		})
	}
}

func TestSweep_InsertsTerminateForStoppingRowWithoutJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	inst := e.OldInstance(id)
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped, InstanceID: inst})

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, map[string]int{"stopping_without_job": 1}, res.Orphans)
	ws := e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.False(t, liveIDs(e)[inst])
}

func TestSweep_RetriesDiscardedTerminateInsteadOfATwin(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{TerminateMaxAttempts: 1}})
	id := uuid.NewString()
	inst := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID
	e.CP.FailNext(cpfake.RouteTerminate, 503, 1)
	dead := e.Terminate(id).Job
	e.WaitFor("terminate discarded", func() bool {
		j, err := e.Insert.JobGet(context.Background(), dead.ID)
		require.NoError(t, err)
		return j.State == rivertype.JobStateDiscarded
	})
	require.Equal(t, store.StatusStopping, e.Workspace(id).Status)

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, map[string]int{"stopping_discarded": 1}, res.Orphans)
	require.Equal(t, 1, res.Retried)
	require.Zero(t, res.Enqueued)
	e.WaitStatus(id, store.StatusStopped)
	terms := e.JobsOfKind(jobs.KindTerminate)
	require.Len(t, terms, 1, "the discarded job itself is retried, no twin")
	require.Equal(t, dead.ID, terms[0].ID)
	require.Equal(t, rivertype.JobStateCompleted, terms[0].State)
	require.False(t, liveIDs(e)[inst])
}

func TestSweep_MarksStuckProvisioningFailed(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := e.SeedRows(
		jobtest.Row{Status: store.StatusProvisioning, ChangedAgo: 2 * time.Hour}, // stuck
		jobtest.Row{Status: store.StatusProvisioning, ChangedAgo: 2 * time.Hour}, // has a live job
		jobtest.Row{Status: store.StatusProvisioning, ChangedAgo: time.Minute},   // before the deadline
	)
	ws := e.Workspace(rows[1].ID)
	_, err := e.Insert.Insert(context.Background(), jobs.ProvisionArgs{WorkspaceID: ws.ID, Generation: ws.Generation, Nonce: ws.Nonce}, nil)
	require.NoError(t, err)

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, map[string]int{"stuck_provisioning": 1}, res.Orphans)
	require.Equal(t, 1, res.MarkedFailed)
	stuck := e.Workspace(rows[0].ID)
	require.Equal(t, store.StatusFailed, stuck.Status)
	require.Contains(t, stuck.LastError, "no live provision job")
	require.Equal(t, store.StatusProvisioning, e.Workspace(rows[1].ID).Status)
	require.Equal(t, store.StatusProvisioning, e.Workspace(rows[2].ID).Status)
}

func TestSweep_LeavesInstanceYoungerThanGraceAlone(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	e.CP.AddInstance(uuid.NewString(), cpfake.StateRunning, time.Now().Add(-30*time.Second))

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, 1, res.SkippedYoung)
	require.Empty(t, res.Orphans)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
}

func TestSweep_SkipsInstanceOfWorkspaceWithLiveProvision(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	e.SeedHealthy(9)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	e.OldInstance(id) // a retried provision may still adopt it

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})

	require.Equal(t, 1, res.SkippedInFlight)
	require.Empty(t, res.Orphans)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
}

// failingList is the real CP client whose list fails from page n on,
// through the fake's own scripted 503.
type failingList struct {
	cp.API
	fake  *cpfake.Server
	pages int
	n     int
}

func (f *failingList) List(ctx context.Context, o cp.ListOptions) (cp.Page, error) {
	if f.pages++; f.pages == f.n {
		f.fake.FailNext(cpfake.RouteList, 503, 1)
	}
	return f.API.List(ctx, o)
}

func TestSweep_ListFailureTerminatesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		failPage int
	}{{"first page", 1}, {"partial list", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			e.SeedHealthy(9)
			for range 3 {
				e.OldInstance(uuid.NewString())
			}
			stale := uuid.NewString()
			e.SeedRows(jobtest.Row{ID: stale, Status: store.StatusStopped, Desired: store.DesiredStopped, InstanceID: e.OldInstance(stale)})
			deps := *e.Deps
			deps.CP = &failingList{API: e.API, fake: e.CP, n: tc.failPage}

			res, err := worker.RunSweep(context.Background(), &deps, e.Insert, testSweep(), jobs.OrphanSweepArgs{})

			require.NoError(t, err)
			require.Equal(t, "unknown", res.CPSide)
			require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
			require.Equal(t, map[string]int{"stale_instance_on_row": 1}, res.Orphans, "the database side still runs")
			require.Len(t, e.JobsOfKind(jobs.KindTerminate), 1)
		})
	}
}

func TestSweep_CapHolds(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	healthy := e.SeedHealthy(30)
	for i := range 5 {
		e.OldInstance(healthy[i].ID) // duplicates: strays of workspaces this database has
	}
	s := testSweep()
	s.MaxTerminations = 2

	res := sweepNow(t, e, s, jobs.OrphanSweepArgs{})

	require.Equal(t, 5, res.Orphans["duplicate"])
	require.Equal(t, 2, res.Enqueued)
	require.Equal(t, 3, res.SkippedByCap)
	require.Len(t, e.JobsOfKind(jobs.KindInstanceTerminate), 2)
}

func TestSweep_DryRunChangesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		settings bool // dry run from the settings (SWEEP_DRY_RUN) rather than the job args
	}{{"args", false}, {"settings", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			healthy := e.SeedHealthy(20)
			e.OldInstance(healthy[0].ID)
			stale := uuid.NewString()
			rows := e.SeedRows(
				jobtest.Row{ID: stale, Status: store.StatusStopped, Desired: store.DesiredStopped, InstanceID: e.OldInstance(stale)},
				jobtest.Row{Status: store.StatusStopping, Desired: store.DesiredStopped},
				jobtest.Row{Status: store.StatusProvisioning, ChangedAgo: 2 * time.Hour},
			)
			s := testSweep()
			s.DryRun = tc.settings

			res := sweepNow(t, e, s, jobs.OrphanSweepArgs{DryRun: !tc.settings})

			require.True(t, res.DryRun)
			require.Equal(t, map[string]int{"duplicate": 1, "stale_instance_on_row": 1,
				"stopping_without_job": 1, "stuck_provisioning": 1}, res.Orphans)
			require.Equal(t, 4, res.Planned)
			require.Zero(t, res.Enqueued+res.Retried+res.MarkedFailed)
			jobsNow, err := e.Insert.JobList(context.Background(), nil)
			require.NoError(t, err)
			require.Empty(t, jobsNow.Jobs)
			for _, r := range rows {
				require.Equal(t, r.Status, e.Workspace(r.ID).Status)
			}
		})
	}
}

func TestSweep_NoListEndpointStillRunsDatabaseSide(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Fake: cpfake.Options{NoList: true}})
	id := uuid.NewString()
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopped, Desired: store.DesiredStopped, InstanceID: e.OldInstance(id)})

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, "unknown", res.CPSide, "one 404 is not evidence of a CP without the list")
	require.Equal(t, 1, res.Enqueued)
	for range 2 { // FastSettings: three 404s in a row decide it
		res = sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	}

	require.Equal(t, "unsupported", res.CPSide)
	require.Equal(t, store.StatusStopping, e.Workspace(id).Status)
	require.Len(t, e.JobsOfKind(jobs.KindTerminate), 1)
	require.Contains(t, e.Logs.String(), `"evt":"sweep.cp_list_unsupported"`)
}

func TestSweep_BreakerHoldsAnUnknownFleetUntilForced(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	for range 10 {
		e.OldInstance(uuid.NewString()) // a fleet this database has never seen
	}
	s := testSweep()
	s.MaxTerminations = 4

	held := sweepNow(t, e, s, jobs.OrphanSweepArgs{})

	require.True(t, held.BreakerOpen)
	require.Equal(t, "breaker_open", held.CPSide)
	require.Equal(t, 10, held.Orphans["unknown_workspace"])
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
	require.Contains(t, e.Logs.String(), `"evt":"sweep.breaker_open"`)

	forced := sweepNow(t, e, s, jobs.OrphanSweepArgs{Force: true})

	require.True(t, forced.BreakerOpen)
	require.True(t, forced.Forced)
	require.Equal(t, 4, forced.Enqueued)
	require.Equal(t, 6, forced.SkippedByCap)
	require.Len(t, e.JobsOfKind(jobs.KindInstanceTerminate), 4)
}

func TestSweep_SkipsWhileAnotherSweepRuns(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	e.OldInstance(uuid.NewString())
	conn, err := e.Pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	ok, err := store.MustFor("").TryLockSweep(context.Background(), conn)
	require.NoError(t, err)
	require.True(t, ok)

	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{Force: true})

	require.Equal(t, "another sweep running", res.Skipped)
	require.Empty(t, res.Orphans)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
	require.NoError(t, store.MustFor("").UnlockSweep(context.Background(), conn))
}

func TestOrphanSweepWorker_RunsOnStartAndOnRequestWithOutput(t *testing.T) {
	t.Parallel()
	s := testSweep()
	s.Interval = time.Hour
	e := jobtest.New(t, jobtest.Config{Options: jobs.Options{Sweep: &s}})
	healthy := e.SeedHealthy(9)
	orphan := e.OldInstance(healthy[0].ID)

	manual, err := jobs.RequestSweep(context.Background(), e.Insert, jobs.OrphanSweepArgs{DryRun: true})
	require.NoError(t, err)
	require.Nil(t, manual.UniqueKey, "a manual sweep is never skipped as a duplicate")
	var sweeps []*rivertype.JobRow
	e.WaitFor("periodic and manual sweeps completed", func() bool {
		sweeps = e.JobsOfKind(jobs.KindOrphanSweep)
		done := 0
		for _, j := range sweeps {
			if j.State == rivertype.JobStateCompleted {
				done++
			}
		}
		return done == 2
	})
	for _, j := range sweeps {
		out, ok := worker.SweepOutput(j)
		require.True(t, ok, "job %d recorded its output", j.ID)
		require.Equal(t, j.ID == manual.ID, out.DryRun)
		if j.ID != manual.ID {
			require.NotNil(t, j.UniqueKey, "the periodic sweep is unique by period")
		}
	}
	e.WaitFor("orphan terminated by the periodic sweep", func() bool { return !liveIDs(e)[orphan] })
	require.Equal(t, 2, strings.Count(e.Logs.String(), `"evt":"sweep.done"`))
}

func TestSweepSettings_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    jobs.SweepSettings
		want string
	}{
		{"defaults", jobs.SweepSettings{}, ""},
		{"grace within a provision's life", jobs.SweepSettings{Grace: 3 * time.Minute}, "grace"},
		{"breaker share above 1", jobs.SweepSettings{BreakerShare: 1.5}, "breaker share"},
		{"timeout past rescue", jobs.SweepSettings{Timeout: 10 * time.Minute}, "rescue-after"},
		{"page too large", jobs.SweepSettings{PageSize: 5000}, "page size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.s.Validate(2*time.Minute, 3*time.Minute)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
