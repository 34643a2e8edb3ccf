package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/app"
	"example.com/platform/hostdb"
)

// preCutover writes a host row with an instance (imported) and a child
// from before the cutover that holds none (a create whose goroutine
// failed, so app.Import never takes it), and runs the import.
func preCutover(t *testing.T, e *env) (parent, child string) {
	ctx := context.Background()
	parent, child = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	_, err := e.db.ExecContext(ctx, `INSERT INTO public.workspaces (id, name, tier, runtime, status, instance_id)
		VALUES ($1, 'old parent', 1, 'python', 'online', 'i-0123456789abcdef0')`, parent)
	require.NoError(t, err)
	_, err = e.db.ExecContext(ctx, `INSERT INTO public.workspaces (id, name, tier, runtime, parent_id, status, last_sample_error)
		VALUES ($1, 'old failed child', 1, 'python', $2, 'failed', 'provisioning failed')`, child, parent)
	require.NoError(t, err)
	rep, err := app.Import(ctx, e.db, "", false)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Created)
	return parent, child
}

// The child's delete, and its parent's, must work after a complete
// import: it has nothing to stop (review 13, R4). Before, the worker's
// refusal of its unknown id blocked the whole subtree's delete for ever,
// and the parent's instance ran on.
func TestPreCutoverRowWithoutInstanceNeverBlocksItsSubtreeDelete(t *testing.T) {
	e := newEnv(t)
	parent, child := preCutover(t, e)
	for _, path := range []string{"/workspaces/" + parent, "/workspaces/" + child} {
		code, out := e.do("DELETE", path, "")
		t.Logf("DELETE %s -> %d %s", path, code, out)
		require.NotEqual(t, http.StatusConflict, code, "DELETE %s refused after a complete import: %s", path, out)
		require.Equal(t, http.StatusAccepted, code, out)
	}
	for _, id := range []string{parent, child} {
		ws, err := hostdb.Get(context.Background(), e.db, id)
		require.NoError(t, err)
		require.Equal(t, hostdb.StatusRemoved, ws.Status, id)
	}
	require.Equal(t, 1, e.count(`SELECT count(*) FROM provisioner.river_job WHERE kind = 'workspace_terminate'
		AND args->>'workspace_id' = $1`, parent), "the parent's instance is stopped")
}

// Its restart (before any delete: a removed row's restart is refused,
// 409, as for any removed row) provisions it afresh from the host row.
func TestPreCutoverRowWithoutInstanceRestartProvisionsIt(t *testing.T) {
	e := newEnv(t)
	_, child := preCutover(t, e)
	code, out := e.do("POST", "/workspaces/"+child+"/restart", "")
	require.NotEqual(t, http.StatusConflict, code, "restart refused after a complete import: %s", out)
	require.Equal(t, http.StatusAccepted, code, out)
	require.Equal(t, jobs.DesiredRunning, e.worker(child).Desired)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM provisioner.river_job WHERE kind = 'workspace_provision'
		AND args->>'workspace_id' = $1`, child))
}

// A row unknown to the worker that does hold an instance is still
// refused whole: deleting it would leave its instance running untracked.
func TestNeverImportedRowWithAnInstanceIsStillRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	parent, child := "33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444"
	_, err := e.db.ExecContext(ctx, `INSERT INTO public.workspaces (id, name, tier, runtime, status)
		VALUES ($1, 'never imported parent', 1, 'python', 'failed')`, parent)
	require.NoError(t, err)
	_, err = e.db.ExecContext(ctx, `INSERT INTO public.workspaces (id, name, tier, runtime, parent_id, status, instance_id)
		VALUES ($1, 'never imported child', 1, 'python', $2, 'online', 'i-0123456789abcdef1')`, child, parent)
	require.NoError(t, err)
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/workspaces/" + parent},
		{"POST", "/workspaces/" + child + "/restart"},
	} {
		code, out := e.do(c.method, c.path, "")
		require.Equal(t, http.StatusConflict, code, "%s %s: %s", c.method, c.path, out)
		require.Contains(t, out, "platform import")
	}
	ws, err := hostdb.Get(ctx, e.db, child)
	require.NoError(t, err)
	require.NotEqual(t, hostdb.StatusRemoved, ws.Status, "the refused delete rolled back")
}
