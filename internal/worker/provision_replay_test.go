package worker_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// replayCP answers a repeated Idempotency-Key with the original answer, as
// a CP backed by EC2's ClientToken may, whatever became of the instance.
type replayCP struct {
	cp.API
	mu   sync.Mutex
	seen map[string]cp.Instance
}

func (c *replayCP) Start(ctx context.Context, req cp.ProvisionRequest) (cp.Instance, error) {
	c.mu.Lock()
	in, ok := c.seen[req.IdempotencyKey]
	c.mu.Unlock()
	if ok {
		return in, nil
	}
	in, err := c.API.Start(ctx, req)
	if err == nil {
		c.mu.Lock()
		c.seen[req.IdempotencyKey] = in
		c.mu.Unlock()
	}
	return in, err
}

// A provision's last attempt failed to record instance B and handed it to
// an instance_terminate (B is gone, the job discarded); an operator's Retry
// sends the same key and the CP replays B. The row must not record B (it
// used to end running on a terminated instance): it ends failed with no
// instance, and the job completes (retrying would get B again).
func TestProvision_RetryReplayingAStoppedInstanceFailsTheRowInsteadOfRecording(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Settings: jobs.Settings{ProvisionMaxAttempts: 1},
		CP: func(e *jobtest.Env) cp.API { return &replayCP{API: e.API, seen: map[string]cp.Instance{}} }})
	e.Start()
	ctx := context.Background()
	_, err := e.Pool.Exec(ctx, `
		CREATE FUNCTION fail_record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected: record failed'; END $$;
		CREATE TRIGGER fail_record BEFORE INSERT ON workspace_events
			FOR EACH ROW WHEN (NEW.event = 'provision.ec2_started') EXECUTE FUNCTION fail_record();`)
	require.NoError(t, err)
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	require.Equal(t, rivertype.JobStateDiscarded, finalJob(t, e, job.ID).State)
	b := e.CP.Instances()[0].InstanceID
	requireTerminatedByInstanceTerminate(t, e, b)
	_, err = e.Pool.Exec(ctx, `DROP TRIGGER fail_record ON workspace_events`)
	require.NoError(t, err)

	_, err = e.Insert.JobRetry(ctx, job.ID) // operator: River UI Retry
	require.NoError(t, err)

	ws := e.WaitStatus(id, store.StatusFailed)
	require.Empty(t, ws.InstanceID, "a terminated instance recorded on the row")
	require.Contains(t, ws.LastError, b)
	require.Equal(t, rivertype.JobStateCompleted, finalJob(t, e, job.ID).State, "a retry would replay the same instance for ever")
	require.Empty(t, e.CP.Live(id))
	require.Len(t, e.CP.Instances(), 1, "nothing else launched")
}
