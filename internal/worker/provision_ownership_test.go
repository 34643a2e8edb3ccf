package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

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

// A rescued job whose first attempt comes back: JobCompleteTx returns the
// job unchanged, so the row change must roll back, and the retry adopts
// the instance instead of launching another (invariant 3).
func TestProvision_CompletionOfRescuedJobRollsBackAndRetryAdopts(t *testing.T) {
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
