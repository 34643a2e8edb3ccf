package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// jobEvents subscribes to the worker's kinds events now, before the
// caller inserts or starts what produces them (a fast job's event sent
// before a later subscription would be missed), and returns a wait for
// one job's first such event.
func jobEvents(t *testing.T, e *jobtest.Env, kinds ...river.EventKind) (wait func(jobID int64) *river.Event) {
	t.Helper()
	events, cancel := e.Worker.Subscribe(kinds...)
	t.Cleanup(cancel)
	return func(jobID int64) *river.Event {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Job.ID == jobID {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %v event for job %d", kinds, jobID)
			}
		}
	}
}

func TestTerminate_WaitsForProvisionInFlightThenKillsItsInstance(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 0)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)

	wait := jobEvents(t, e, river.EventKindJobSnoozed, river.EventKindJobCompleted)
	stop := e.Terminate(id)
	ev := wait(stop.Job.ID)

	require.Equal(t, river.EventKindJobSnoozed, ev.Kind, "the stop finished while a provision was still in flight")
	require.Equal(t, store.StatusStopping, e.Workspace(id).Status)
	gate.open()
	ws := e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Empty(t, e.CP.Live(id), "the instance %s the provision got still runs", inst.InstanceID)
}

func TestTerminate_WaitForProvisionIsBounded(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{MaxSnoozes: 2}})
	gate := gateProvisions(t, e, 0)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	gate.next(t)

	stop := e.Terminate(id)
	e.WaitFor("the wait to spend an attempt", func() bool {
		return len(jobState(t, e, stop.Job.ID).Errors) > 0
	})

	job := jobState(t, e, stop.Job.ID)
	require.Contains(t, job.Errors[0].Error, "still in flight")
	require.Equal(t, store.StatusStopping, e.Workspace(id).Status)
}

func TestTerminate_WithoutRecordedIDKillsWhatALostProvisionAnswerLaunched(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	gate := gateProvisions(t, e, 1)
	e.CP.SetFaults(cpfake.Faults{LostAnswer: 1})
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)
	e.CP.SetFaults(cpfake.Faults{}) // drawn already for the blocked call

	e.Terminate(id)
	gate.open()

	ws := e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Empty(t, e.CP.Live(id), "the instance of the lost answer still runs")
	require.Equal(t, 1, e.CP.Stats().Launched)
	var deleted []string
	for _, r := range requestsOf(e.CP, cpfake.RouteTerminate) {
		deleted = append(deleted, r.Query)
	}
	require.Contains(t, deleted, "instance_id="+inst.InstanceID)
}

// A 404 on DELETE is not proof: the status endpoint still says pending,
// so the row stays stopping and the job retries until a DELETE succeeds.
func TestTerminate_404WhilePendingIsNotGone(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{BootTime: time.Hour}})
	id := uuid.NewString()
	inst := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID
	require.Equal(t, cpfake.StatePending, e.CP.Live(id)[0].State)
	e.CP.FailNext(cpfake.RouteTerminate, 404, 2) // {"error":"injected"}: a CP-worded 404

	stop := e.Terminate(id)
	e.WaitFor("the stop to complete", func() bool {
		// The row first: the stop marks it stopped in the transaction that
		// completes the job, so a row read before a job still unfinished
		// is the row of an unfinished stop (read the other way round, the
		// stop could commit in between and a correct run would fail).
		ws := e.Workspace(id)
		job := jobState(t, e, stop.Job.ID)
		if job.State != rivertype.JobStateCompleted {
			require.Equal(t, store.StatusStopping, ws.Status, "a 404 was read as gone while the instance was pending")
			require.Equal(t, inst, ws.InstanceID)
		}
		return job.State == rivertype.JobStateCompleted
	})

	job := jobState(t, e, stop.Job.ID)
	require.Len(t, job.Errors, 2)
	require.Contains(t, job.Errors[0].Error, `"pending"`)
	require.Len(t, requestsOf(e.CP, cpfake.RouteTerminate), 3)
	require.GreaterOrEqual(t, len(requestsOf(e.CP, cpfake.RouteStatus)), 2)
	require.Empty(t, e.CP.Live(id))
	require.Equal(t, store.StatusStopped, e.Workspace(id).Status)
}

// An id the CP does not know at all: DELETE 404, status 404 with the CP's
// own error, and the list does not show it: then, and only then, gone.
func TestTerminate_404ConfirmedUnknownByStatusAndListIsGone(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusRunning, desired: store.DesiredRunning, instanceID: randomInstanceID()}.insert(t, e)

	e.Terminate(id)

	e.WaitStatus(id, store.StatusStopped)
	require.Len(t, requestsOf(e.CP, cpfake.RouteStatus), 1)
	require.Len(t, requestsOf(e.CP, cpfake.RouteList), 1)
}

func TestTerminate_404WithStatusUnknownIsRetried(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	e.CP.FailNext(cpfake.RouteTerminate, 404, 1)
	e.CP.FailNext(cpfake.RouteStatus, 502, 1)

	stop := e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	job := jobState(t, e, stop.Job.ID)
	require.Len(t, job.Errors, 1)
	require.Contains(t, job.Errors[0].Error, "status could not confirm")
	require.Len(t, requestsOf(e.CP, cpfake.RouteTerminate), 2)
}

func TestTerminate_TwiceMakesOneJobAndOneDelete(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true}) // the stop stays queued
	ctx := context.Background()
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusRunning, desired: store.DesiredRunning, instanceID: randomInstanceID()}.insert(t, e)

	first, second := e.Terminate(id), e.Terminate(id)
	dup, err := e.Insert.Insert(ctx, jobs.TerminateArgs{WorkspaceID: id}, nil)
	require.NoError(t, err)

	require.Equal(t, jobs.ActionStopping, first.Action)
	require.Equal(t, jobs.ActionAfterStop, second.Action)
	require.Equal(t, first.Job.ID, second.Job.ID)
	require.True(t, dup.UniqueSkippedAsDuplicate)
	require.Len(t, jobsOfKind(workspaceJobs(t, e, id), jobs.KindTerminate), 1)
}

func TestTerminate_TwiceRunsOneDelete(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	e.Terminate(id)
	e.Terminate(id)

	e.WaitStatus(id, store.StatusStopped)
	require.Len(t, requestsOf(e.CP, cpfake.RouteTerminate), 1)
}

// The unique window of a stop leaves out completed: a second stop within
// River's 24 h completed retention must run, not be skipped as a duplicate.
func TestTerminate_SecondStopAfterCompletedOneRuns(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	second := e.Terminate(id)

	require.Equal(t, jobs.ActionStopping, second.Action)
	e.WaitStatus(id, store.StatusStopped)
	require.Len(t, jobsOfKind(workspaceJobs(t, e, id), jobs.KindTerminate), 2)
	require.Empty(t, e.CP.Live(id))
}

func TestTerminate_NeverProvisionedWorkspaceLaunchesNothing(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	prov := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	stop := e.Terminate(id)

	e.Start()
	e.WaitStatus(id, store.StatusStopped)

	require.Equal(t, rivertype.JobStateCancelled, jobState(t, e, prov.Job.ID).State)
	require.Equal(t, rivertype.JobStateCompleted, jobState(t, e, stop.Job.ID).State)
	for _, r := range e.CP.Requests() {
		require.Equal(t, cpfake.RouteList, r.Route, "only the confirming list may reach the CP")
	}
	require.Zero(t, e.CP.Stats().Launched)
}

func TestTerminate_FailedWorkspaceWithoutInstanceMakesNoCPCall(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusFailed, desired: store.DesiredRunning}.insert(t, e)

	res := e.Terminate(id)

	require.Equal(t, jobs.ActionStopped, res.Action)
	require.Nil(t, res.Job)
	require.Equal(t, store.StatusStopped, e.Workspace(id).Status)
	require.Empty(t, workspaceJobs(t, e, id))
	require.Empty(t, e.CP.Requests())
}

// The status endpoint calling the instance unknown is not enough while the
// CP's list still shows it live (eventual consistency, a wrong route).
func TestTerminate_404UnknownButStillListedIsRetried(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	e.CP.FailNext(cpfake.RouteTerminate, 404, 1)
	e.CP.FailNext(cpfake.RouteStatus, 404, 1) // {"error":"injected"}: reads as unknown

	stop := e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	job := jobState(t, e, stop.Job.ID)
	require.Len(t, job.Errors, 1)
	require.Contains(t, job.Errors[0].Error, "still lists")
	require.Len(t, requestsOf(e.CP, cpfake.RouteTerminate), 2)
	require.Empty(t, e.CP.Live(id))
}
