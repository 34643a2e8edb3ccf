package worker_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Requests of the table in docs/design.md#requests.
const (
	reqProvision = "provision"
	reqTerminate = "terminate"
	reqDelete    = "delete"
	reqRestart   = "restart"
)

// Starting rows of the table in docs/design.md#requests ("" is no row).
const (
	fromNone             = ""
	fromProvisioning     = "provisioning"
	fromRunning          = "running"
	fromStopping         = "stopping"
	fromStopped          = "stopped"
	fromRemoved          = "removed"
	fromFailed           = "failed"
	fromFailedWithInstID = "failed+instance"
)

// cellWant is what one cell of the table must do.
type cellWant struct {
	unknown    bool   // ErrUnknownWorkspace, nothing written
	action     string // Result.Action
	status     string
	desired    string
	nextGen    bool     // generation bumped by one, instance cleared
	newJobs    []string // kinds inserted by the request
	resultJob  string   // kind of Result.Job; "" for nil
	cancelProv bool     // the never-attempted provision job was cancelled
}

func TestStateTable_EveryCell(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	for req, row := range stateTable() {
		for from, want := range row {
			t.Run(req+"/"+orNone(from), func(t *testing.T) {
				runCell(t, e, req, from, want)
			})
		}
	}
}

// stateTable is docs/design.md's request table: request -> starting row ->
// what it does.
func stateTable() map[string]map[string]cellWant {
	P, T := jobs.KindProvision, jobs.KindTerminate
	stoppingMeans := func(desired string, cancel bool) cellWant {
		return cellWant{action: jobs.ActionStopping, status: store.StatusStopping, desired: desired,
			newJobs: []string{T}, resultJob: T, cancelProv: cancel}
	}
	afterStop := func(desired string) cellWant {
		return cellWant{action: jobs.ActionAfterStop, status: store.StatusStopping, desired: desired, resultJob: T}
	}
	nextGen := cellWant{action: jobs.ActionNextGeneration, status: store.StatusProvisioning,
		desired: store.DesiredRunning, nextGen: true, newJobs: []string{P}, resultJob: P}
	noop := func(status, desired string) cellWant {
		return cellWant{action: jobs.ActionNoop, status: status, desired: desired}
	}
	return map[string]map[string]cellWant{
		reqProvision: {
			fromNone: {action: jobs.ActionCreated, status: store.StatusProvisioning, desired: store.DesiredRunning,
				newJobs: []string{P}, resultJob: P},
			fromProvisioning: {action: jobs.ActionNoop, status: store.StatusProvisioning, desired: store.DesiredRunning, resultJob: P},
			fromRunning:      noop(store.StatusRunning, store.DesiredRunning),
			fromStopping:     afterStop(store.DesiredRunning),
			fromStopped:      nextGen,
			fromRemoved:      nextGen,
			fromFailed:       nextGen,
			// A provision never overwrites a recorded id: terminate first.
			fromFailedWithInstID: stoppingMeans(store.DesiredRunning, false),
		},
		reqTerminate: {
			fromNone:             {unknown: true},
			fromProvisioning:     stoppingMeans(store.DesiredStopped, true),
			fromRunning:          stoppingMeans(store.DesiredStopped, false),
			fromStopping:         afterStop(store.DesiredStopped),
			fromStopped:          noop(store.StatusStopped, store.DesiredStopped),
			fromRemoved:          noop(store.StatusRemoved, store.DesiredDeleted),
			fromFailed:           {action: jobs.ActionStopped, status: store.StatusStopped, desired: store.DesiredStopped},
			fromFailedWithInstID: stoppingMeans(store.DesiredStopped, false),
		},
		reqDelete: {
			fromNone:         {unknown: true},
			fromProvisioning: stoppingMeans(store.DesiredDeleted, true),
			fromRunning:      stoppingMeans(store.DesiredDeleted, false),
			fromStopping:     afterStop(store.DesiredDeleted),
			// docs/design.md's table: no-op (nothing runs, nothing to record).
			fromStopped:          noop(store.StatusStopped, store.DesiredStopped),
			fromRemoved:          noop(store.StatusRemoved, store.DesiredDeleted),
			fromFailed:           {action: jobs.ActionStopped, status: store.StatusRemoved, desired: store.DesiredDeleted},
			fromFailedWithInstID: stoppingMeans(store.DesiredDeleted, false),
		},
		reqRestart: {
			fromNone:             {unknown: true},
			fromProvisioning:     stoppingMeans(store.DesiredRunning, true),
			fromRunning:          stoppingMeans(store.DesiredRunning, false),
			fromStopping:         afterStop(store.DesiredRunning),
			fromStopped:          nextGen,
			fromRemoved:          nextGen,
			fromFailed:           nextGen,
			fromFailedWithInstID: stoppingMeans(store.DesiredRunning, false),
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "no-row"
	}
	return s
}

// seedCell writes the starting row (and the live job a row in that
// status has) and returns it, or an empty row for fromNone.
func seedCell(t *testing.T, e *jobtest.Env, from string) (store.Workspace, *rivertype.JobRow) {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	if from == fromNone {
		return store.Workspace{ID: id}, nil
	}
	s := seedRow{id: id, status: from, desired: store.DesiredRunning, generation: 3, nonce: "n3"}
	switch from {
	case fromRunning, fromStopping:
		s.instanceID = randomInstanceID()
	case fromStopped:
		s.desired = store.DesiredStopped
	case fromRemoved:
		s.desired = store.DesiredDeleted
	case fromFailedWithInstID:
		s.status, s.instanceID = store.StatusFailed, randomInstanceID()
	}
	if from == fromStopping {
		s.desired = store.DesiredStopped
	}
	s.insert(t, e)
	var live *rivertype.JobRow
	switch from {
	case fromProvisioning:
		res, err := e.Insert.Insert(ctx, jobs.ProvisionArgs{WorkspaceID: id, Generation: 3, Nonce: "n3"}, nil)
		require.NoError(t, err)
		live = res.Job
	case fromStopping:
		res, err := e.Insert.Insert(ctx, jobs.TerminateArgs{WorkspaceID: id}, nil)
		require.NoError(t, err)
		live = res.Job
	}
	return e.Workspace(id), live
}

func request(ctx context.Context, tx pgx.Tx, e *jobtest.Env, req, id string) (jobs.Result, error) {
	switch req {
	case reqProvision:
		return jobs.RequestProvision(ctx, tx, e.Insert, jobs.ProvisionRequest{WorkspaceID: id})
	case reqTerminate:
		return jobs.RequestTerminate(ctx, tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id})
	case reqDelete:
		return jobs.RequestTerminate(ctx, tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id, Delete: true})
	}
	return jobs.RequestRestart(ctx, tx, e.Insert, id, "test")
}

func runCell(t *testing.T, e *jobtest.Env, req, from string, want cellWant) {
	ctx := context.Background()
	before, live := seedCell(t, e, from)
	jobsBefore := workspaceJobs(t, e, before.ID)

	var res jobs.Result
	err := e.Tx(func(tx pgx.Tx) (err error) {
		res, err = request(ctx, tx, e, req, before.ID)
		return err
	})
	checkCell(t, e, cell{from: from, before: before, live: live, jobsBefore: jobsBefore}, res, err, want)
}

// cell is one seeded starting row of the table.
type cell struct {
	from       string
	before     store.Workspace
	live       *rivertype.JobRow
	jobsBefore []store.JobRef
}

func newCell(t *testing.T, e *jobtest.Env, from string) cell {
	before, live := seedCell(t, e, from)
	return cell{from: from, before: before, live: live, jobsBefore: workspaceJobs(t, e, before.ID)}
}

// checkCell asserts that a request on c's row did what want says.
func checkCell(t *testing.T, e *jobtest.Env, c cell, res jobs.Result, err error, want cellWant) {
	t.Helper()
	ctx := context.Background()
	before, live, from, jobsBefore := c.before, c.live, c.from, c.jobsBefore
	if want.unknown {
		require.ErrorIs(t, err, jobs.ErrUnknownWorkspace)
		_, err := store.MustFor("").Get(ctx, e.Pool, before.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.Empty(t, workspaceJobs(t, e, before.ID))
		return
	}
	require.NoError(t, err)
	require.Equal(t, want.action, res.Action)

	after := e.Workspace(before.ID)
	require.Equal(t, want.status, after.Status)
	require.Equal(t, want.desired, after.Desired)
	switch {
	case from == fromNone:
		require.EqualValues(t, 1, after.Generation)
		require.Empty(t, after.InstanceID)
	case want.nextGen:
		require.Equal(t, before.Generation+1, after.Generation)
		require.NotEqual(t, before.Nonce, after.Nonce)
		require.Empty(t, after.InstanceID)
	default:
		require.Equal(t, before.Generation, after.Generation)
		require.Equal(t, before.InstanceID, after.InstanceID, "a request never drops or overwrites a recorded id")
	}

	requireNewJobs(t, e, after, jobsBefore, want.newJobs)
	requireResultJob(t, res, live, want.resultJob)
	if live != nil && live.Kind == jobs.KindProvision {
		state := jobState(t, e, live.ID).State
		if want.cancelProv {
			require.Equal(t, rivertype.JobStateCancelled, state, "a provision never attempted is cancelled")
		} else {
			require.Equal(t, rivertype.JobStateAvailable, state)
		}
	}
}

func requireNewJobs(t *testing.T, e *jobtest.Env, ws store.Workspace, before []store.JobRef, kinds []string) {
	t.Helper()
	old := map[int64]bool{}
	for _, j := range before {
		old[j.ID] = true
	}
	var got []string
	for _, j := range workspaceJobs(t, e, ws.ID) {
		if old[j.ID] {
			continue
		}
		got = append(got, j.Kind)
		if j.Kind == jobs.KindProvision {
			job := jobState(t, e, j.ID)
			require.Equal(t, jobs.QueueProvision, job.Queue)
			require.JSONEq(t, `{"workspace_id":"`+ws.ID+`","generation":`+itoa(ws.Generation)+`,"nonce":"`+ws.Nonce+`"}`,
				string(job.EncodedArgs), "the job carries the row's new generation")
		}
		if j.Kind == jobs.KindTerminate {
			require.Equal(t, jobs.QueueTerminate, jobState(t, e, j.ID).Queue)
		}
	}
	require.ElementsMatch(t, kinds, got)
}

func requireResultJob(t *testing.T, res jobs.Result, live *rivertype.JobRow, kind string) {
	t.Helper()
	if kind == "" {
		require.Nil(t, res.Job)
		return
	}
	require.NotNil(t, res.Job)
	require.Equal(t, kind, res.Job.Kind)
	if live != nil && live.Kind == kind {
		require.Equal(t, live.ID, res.Job.ID, "a request that changes nothing returns the live job")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRequestTerminate_CancelsOnlyProvisionsNeverAttempted(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusProvisioning, desired: store.DesiredRunning, nonce: "n1"}.insert(t, e)
	res, err := e.Insert.Insert(ctx, jobs.ProvisionArgs{WorkspaceID: id, Generation: 1, Nonce: "n1"}, nil)
	require.NoError(t, err)
	// Attempted once: it may have launched an instance whose answer was
	// lost, so cancelling it would drop the only job that can adopt it.
	// River stamps attempted_at (and attempted_by) on every fetch.
	_, err = e.Pool.Exec(ctx, `UPDATE river_job SET state = 'retryable', attempt = 1, attempted_at = now(),
		attempted_by = ARRAY['a-worker'], scheduled_at = now() + interval '1 hour' WHERE id = $1`, res.Job.ID)
	require.NoError(t, err)

	stop := e.Terminate(id)

	require.Equal(t, jobs.ActionStopping, stop.Action)
	require.Equal(t, rivertype.JobStateRetryable, jobState(t, e, res.Job.ID).State)
}

func TestStore_RecordInstanceNeverOverwritesRecordedID(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id, held := uuid.NewString(), randomInstanceID()
	// Even a row still provisioning at the job's generation keeps the id it
	// holds: overwriting it would drop an instance nothing else points at.
	seedRow{id: id, status: store.StatusProvisioning, desired: store.DesiredRunning, instanceID: held}.insert(t, e)

	var recorded bool
	require.NoError(t, e.Tx(func(tx pgx.Tx) (err error) {
		recorded, err = store.MustFor("").RecordInstance(ctx, tx, id, 1, randomInstanceID())
		return err
	}))

	require.False(t, recorded)
	require.Equal(t, held, e.Workspace(id).InstanceID)
}

func TestProvision_WhileStoppingStartsNextGenerationWhenStopCompletes(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	first := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	e.CP.FailNext(cpfake.RouteTerminate, 503, 2) // keep the stop under way
	e.Terminate(id)

	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})

	require.Equal(t, jobs.ActionAfterStop, res.Action)
	require.Equal(t, store.DesiredRunning, e.Workspace(id).Desired)
	var ws store.Workspace
	e.WaitFor("next generation running", func() bool {
		ws = e.Workspace(id)
		return ws.Status == store.StatusRunning && ws.Generation == first.Generation+1
	})
	require.NotEqual(t, first.InstanceID, ws.InstanceID)
	live := e.CP.Live(id)
	require.Len(t, live, 1)
	require.Equal(t, ws.InstanceID, live[0].InstanceID)
}
