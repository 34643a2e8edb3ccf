package jobs_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

func envRows(t *testing.T, e *jobtest.Env, id string) int {
	t.Helper()
	var n int
	require.NoError(t, e.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM workspace_env WHERE workspace_id = $1`, id).Scan(&n))
	return n
}

func requestDelete(t *testing.T, e *jobtest.Env, id string) {
	t.Helper()
	require.NoError(t, e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminate(context.Background(), tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id, Delete: true})
		return err
	}))
}

// Finding 4: workspace_env outlived `terminate --delete`, holding the
// workspace's secrets (and putting them in every backup) for as long as
// its row. A delete drops it in the request's own transaction, whether
// the row was running or already stopped; a plain stop keeps it, since
// the next start needs it.
func TestTerminate_DeleteClearsWorkspaceEnv(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	secret := map[string]string{"API_KEY": "sk-live-env-4"}

	running := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: running, Env: secret})
	requestDelete(t, e, running)
	require.Zero(t, envRows(t, e, running), "cleared with the delete request")
	e.WaitStatus(running, store.StatusRemoved)
	require.Zero(t, envRows(t, e, running))

	stopped := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: stopped, Env: secret})
	e.Terminate(stopped)
	e.WaitStatus(stopped, store.StatusStopped)
	require.Equal(t, 1, envRows(t, e, stopped), "a plain stop keeps the env for the next start")
	requestDelete(t, e, stopped)
	require.Zero(t, envRows(t, e, stopped), "a delete of a stopped row clears it too")
}
