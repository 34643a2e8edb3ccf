package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// requireTerminatedByInstanceTerminate waits for the instance_terminate of
// inst to complete and checks the CP no longer runs it.
func requireTerminatedByInstanceTerminate(t *testing.T, e *jobtest.Env, instanceID string) {
	t.Helper()
	e.WaitFor("instance_terminate of "+instanceID+" completed", func() bool {
		its := instanceTerminates(t, e, instanceID)
		return len(its) == 1 && its[0].State == string(rivertype.JobStateCompleted)
	})
	for _, inst := range e.CP.Instances() {
		if inst.InstanceID == instanceID {
			require.False(t, inst.Live(), "the handed-off instance still runs")
		}
	}
}

func TestProvision_StopDuringCPCallHandsInstanceToInstanceTerminate(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 0)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)

	e.Terminate(id)
	gate.open()

	ws := e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	requireTerminatedByInstanceTerminate(t, e, inst.InstanceID)
	require.Empty(t, e.CP.Live(id))
	names := eventNames(t, e, id)
	require.Contains(t, names, "provision.stray_instance")
	require.NotContains(t, names, "provision.ec2_started", "the stopping row never held the instance")
}

func TestProvision_NewGenerationDuringCPCallHandsOldInstanceToInstanceTerminate(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 1) // only generation 1's call blocks
	ctx := context.Background()
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	old := gate.next(t)

	// Stop and provision again completed meanwhile (as after a rescue of
	// the blocked job): the row is at generation 2 with its own job.
	require.NoError(t, e.Tx(func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE workspaces SET generation = 2, provision_nonce = 'gen2' WHERE id = $1`, id); err != nil {
			return err
		}
		_, err := e.Insert.InsertTx(ctx, tx, jobs.ProvisionArgs{WorkspaceID: id, Generation: 2, Nonce: "gen2"}, nil)
		return err
	}))
	e.WaitFor("generation 2 running", func() bool {
		ws := e.Workspace(id)
		return ws.Status == store.StatusRunning && ws.Generation == 2
	})
	gate.open()

	requireTerminatedByInstanceTerminate(t, e, old.InstanceID)
	ws := e.Workspace(id)
	require.NotEqual(t, old.InstanceID, ws.InstanceID, "generation 1's instance never lands on generation 2's row")
	live := e.CP.Live(id)
	require.Len(t, live, 1)
	require.Equal(t, ws.InstanceID, live[0].InstanceID)
}

// A rescued job whose first attempt comes back: the job no longer runs
// under that attempt, so its completion is refused, the row change must
// roll back, and the retry adopts
// the instance instead of launching another (invariant
// "completion-checked commit", docs/design.md).
func TestProvision_CompletionOfRescuedJobRollsBackAndRetryAdopts(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 1)
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)

	setJobState(t, e, res.Job.ID, rivertype.JobStateRetryable, time.Hour)
	gate.open()

	e.WaitFor("the first attempt's completion to be refused", func() bool {
		return logHas(e, `"evt":"job.not_completed"`) || e.Workspace(id).InstanceID != ""
	})
	ws := e.Workspace(id)
	require.Equal(t, store.StatusProvisioning, ws.Status, "the row change of a job that did not complete committed")
	require.Empty(t, ws.InstanceID)
	require.Contains(t, e.Logs.String(), worker.ErrNotCompleted.Error())

	_, err := e.Worker.JobRetry(context.Background(), res.Job.ID) // the rescuer's retry, now
	require.NoError(t, err)

	ws = e.WaitStatus(id, store.StatusRunning)
	require.Equal(t, inst.InstanceID, ws.InstanceID, "the retry adopts the instance the first attempt launched")
	require.Equal(t, 1, e.CP.Stats().Launched)
	require.Len(t, e.CP.Live(id), 1)
	require.Contains(t, eventNames(t, e, id), "provision.adopted")
}

// A rescued job re-run while its first attempt is still in flight: the
// stale attempt must not complete the job the newer attempt owns.
func TestProvision_StaleAttemptDoesNotCompleteJobOfNewerAttempt(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 1)
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)

	// Rescued while blocked and immediately picked up again (attempt 2):
	// it adopts the instance from the list, records it, and completes.
	setJobState(t, e, res.Job.ID, rivertype.JobStateAvailable, 0)
	ws := e.WaitStatus(id, store.StatusRunning)
	require.Equal(t, inst.InstanceID, ws.InstanceID)
	require.Equal(t, rivertype.JobStateCompleted, jobState(t, e, res.Job.ID).State)

	gate.open()
	e.WaitFor("the stale attempt to be refused", func() bool {
		return logHas(e, `"evt":"job.not_completed"`)
	})
	require.Contains(t, e.Logs.String(), `"attempt":1`)
	require.Equal(t, inst.InstanceID, e.Workspace(id).InstanceID)
	require.Len(t, e.CP.Live(id), 1)
}

// cancelAfterAnswer lets the CP's 201 arrive, then holds the answer until
// the job's context ends: an operator's Cancel that lands between the
// answer and the transaction that records it.
type cancelAfterAnswer struct {
	cp.API
	answered chan cp.Instance
}

func (c *cancelAfterAnswer) Start(ctx context.Context, req cp.ProvisionRequest) (cp.Instance, error) {
	inst, err := c.API.Start(ctx, req)
	if err != nil {
		return inst, err
	}
	c.answered <- inst
	<-ctx.Done()
	return inst, nil
}

// finalJob waits until job is cancelled, discarded or completed.
func finalJob(t *testing.T, e *jobtest.Env, id int64) *rivertype.JobRow {
	t.Helper()
	var j *rivertype.JobRow
	e.WaitFor("job final", func() bool {
		j = jobState(t, e, id)
		return j.FinalizedAt != nil
	})
	return j
}

// requireOwned checks invariant "every instance owned" (docs/design.md)
// for inst: its row records it, or an
// instance_terminate was handed it.
func requireOwned(t *testing.T, e *jobtest.Env, workspaceID, instanceID string) {
	t.Helper()
	recorded := e.Workspace(workspaceID).InstanceID == instanceID
	handed := len(instanceTerminates(t, e, instanceID)) > 0
	require.True(t, recorded || handed, "instance %s is owned by nothing", instanceID)
}

func TestProvision_CancelAfterCPAnswerStillOwnsTheInstance(t *testing.T) {
	t.Parallel()
	var c *cancelAfterAnswer
	e := jobtest.New(t, jobtest.Config{NoStart: true, CP: func(e *jobtest.Env) cp.API {
		c = &cancelAfterAnswer{API: e.API, answered: make(chan cp.Instance, 1)}
		return c
	}})
	e.Start()
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	inst := <-c.answered

	_, err := e.Worker.JobCancel(context.Background(), job.ID) // River UI's Cancel

	require.NoError(t, err)
	finalJob(t, e, job.ID)
	requireOwned(t, e, id, inst.InstanceID)
	ws := e.Workspace(id)
	require.Equal(t, store.StatusRunning, ws.Status)
	require.Equal(t, inst.InstanceID, ws.InstanceID)
}

func TestProvision_RecordFailingOnLastAttemptHandsInstanceToInstanceTerminate(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{ProvisionMaxAttempts: 1}})
	// The record's timeline line fails (a DB fault, a timeout): only the
	// record; the hand-off's own line still goes through.
	_, err := e.Pool.Exec(context.Background(), `
		CREATE FUNCTION fail_record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected: record failed'; END $$;
		CREATE TRIGGER fail_record BEFORE INSERT ON workspace_events
			FOR EACH ROW WHEN (NEW.event = 'provision.ec2_started') EXECUTE FUNCTION fail_record();`)
	require.NoError(t, err)
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job

	require.Equal(t, rivertype.JobStateDiscarded, finalJob(t, e, job.ID).State)
	launched := e.CP.Instances()
	require.Len(t, launched, 1)
	requireOwned(t, e, id, launched[0].InstanceID)
	requireTerminatedByInstanceTerminate(t, e, launched[0].InstanceID)
}

// A provision whose job is cancelled (or discarded) while the CP answers
// has no retry to adopt the instance: the refused completion must hand it
// to an instance_terminate instead of dropping it (invariant "every
// instance owned", docs/design.md).
func TestProvision_CancelledWhileCPAnswersHandsInstanceToInstanceTerminate(t *testing.T) {
	t.Parallel()
	for _, state := range []rivertype.JobState{rivertype.JobStateCancelled, rivertype.JobStateDiscarded} {
		t.Run(string(state), func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{})
			gate := gateProvisions(t, e, 1)
			id := uuid.NewString()
			res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
			inst := gate.next(t)

			setJobState(t, e, res.Job.ID, state, 0)
			gate.open()

			e.WaitFor("the stray to be terminated", func() bool {
				return len(e.CP.Live(id)) == 0 && len(instanceTerminates(t, e, inst.InstanceID)) > 0
			})
			ws := e.Workspace(id)
			require.Empty(t, ws.InstanceID, "a job that did not complete recorded its instance")
			require.Equal(t, store.StatusProvisioning, ws.Status)
			require.Contains(t, eventNames(t, e, id), "provision.stray_instance")
		})
	}
}

// A provision that arrives while a stop is under way asks for the next
// generation: its runtime, tier and env must reach that generation's CP
// request rather than be dropped.
func TestProvision_WhileStoppingCarriesItsRequestToTheNextGeneration(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Tier: 1})
	e.Terminate(id) // never attempted: the provision is cancelled, the row stops
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "node", Tier: 3,
		Env: map[string]string{"MODE": "second"}})
	require.Equal(t, jobs.ActionAfterStop, res.Action)

	e.Start()
	ws := e.WaitStatus(id, store.StatusRunning)
	require.EqualValues(t, 2, ws.Generation)
	provisions := requestsOf(e.CP, "provision")
	require.Len(t, provisions, 1, "generation 1 was cancelled before any attempt")
	body := string(provisions[0].Body)
	require.Contains(t, body, `"runtime":"node"`)
	require.Contains(t, body, `"tier":3`)
	require.Contains(t, body, `"MODE":"second"`)
}

func TestProvision_StaleGenerationJobMakesNoCPCall(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusProvisioning, desired: store.DesiredRunning, generation: 2, nonce: "gen2"}.insert(t, e)
	stale, err := e.Insert.Insert(ctx, jobs.ProvisionArgs{WorkspaceID: id, Generation: 1, Nonce: "gen1"}, nil)
	require.NoError(t, err)

	wait := jobEvents(t, e, river.EventKindJobCompleted, river.EventKindJobFailed)
	e.Start()
	ev := wait(stale.Job.ID)

	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	require.Empty(t, e.CP.Requests(), "a stale provision called the CP")
	ws := e.Workspace(id)
	require.Equal(t, store.StatusProvisioning, ws.Status)
	require.Empty(t, ws.InstanceID)
}
