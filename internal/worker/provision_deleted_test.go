package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A provision job deleted while the CP answers (River UI deletes no
// running job, so: rescued while its attempt was out, then deleted by an
// operator) will never run again, exactly like a cancelled one: no retry
// adopts the instance and no later attempt hands off its note. The refused
// completion must hand the instance to an instance_terminate (invariant
// "every instance owned", docs/design.md); read as "may run again", it was
// only noted, and ran on with no row and no job until someone stopped the
// workspace.
func TestProvision_DeletedWhileCPAnswersHandsInstanceToInstanceTerminate(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 1)
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	inst := gate.next(t)

	setJobState(t, e, res.Job.ID, rivertype.JobStateRetryable, time.Hour) // the rescuer
	_, err := e.Worker.JobDelete(context.Background(), res.Job.ID)        // River UI's Delete
	require.NoError(t, err)
	gate.open()

	e.WaitFor("the completion to be refused", func() bool {
		return logHas(e, `"evt":"job.not_completed"`)
	})
	e.WaitFor("the stray to be handed off", func() bool {
		return len(instanceTerminates(t, e, inst.InstanceID)) > 0
	})
	requireTerminatedByInstanceTerminate(t, e, inst.InstanceID)
	ws := e.Workspace(id)
	require.Empty(t, ws.InstanceID, "a job that did not complete recorded its instance")
	require.Equal(t, store.StatusProvisioning, ws.Status)
}
