package httpapi_test

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

// discardedTerminate runs a workspace to running, then stops it while
// the CP answers 500, with a budget of one attempt: the terminate job is
// discarded and the row stays stopping with its instance, which is the
// page an operator gets at night.
func discardedTerminate(t *testing.T, env *jobtest.Env) (wsID string, jobID int64) {
	t.Helper()
	wsID = uuid.NewString()
	env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: wsID})
	env.CP.FailNext(cpfake.RouteTerminate, 500, 1)
	res := env.Terminate(wsID)
	require.NotNil(t, res.Job)
	env.WaitFor("the terminate to be discarded", func() bool {
		return jobRow(t, env, res.Job.ID).State == rivertype.JobStateDiscarded
	})
	ws := env.Workspace(wsID)
	require.Equal(t, store.StatusStopping, ws.Status)
	require.NotEmpty(t, ws.InstanceID)
	return wsID, res.Job.ID
}

func jobRow(t *testing.T, env *jobtest.Env, id int64) *rivertype.JobRow {
	t.Helper()
	job, err := env.Insert.JobGet(context.Background(), id)
	require.NoError(t, err)
	return job
}
