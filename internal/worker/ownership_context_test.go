package worker_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

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

// requireOwned checks invariant 0 for inst: its row records it, or an
// instance_terminate was handed it.
func requireOwned(t *testing.T, e *jobtest.Env, workspaceID, instanceID string) {
	t.Helper()
	recorded := e.Workspace(workspaceID).InstanceID == instanceID
	handed := len(instanceTerminates(t, e, instanceID)) > 0
	require.True(t, recorded || handed, "instance %s is owned by nothing", instanceID)
}

func TestProvision_CancelAfterCPAnswerStillOwnsTheInstance(t *testing.T) {
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
