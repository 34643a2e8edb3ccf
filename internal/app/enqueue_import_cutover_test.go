package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The CLI reads the CP's list once: a host row whose instance is long
// gone is refused, not registered running for ever (review 13, R6), and
// so is one the CP tags with another workspace; --no-cp-check skips it.
func TestEnqueueImport_RefusesInstancesNotLiveAtTheCP(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	lines, rows := fleetLines(env, 3)
	dead := uuid.NewString()
	deadInst := env.CP.AddInstance(dead, cpfake.StateTerminated, time.Now().Add(-48*time.Hour)).InstanceID
	lines += fmt.Sprintf(`{"workspace_id":%q,"instance_id":%q,"runtime":"python","tier":1}`+"\n", dead, deadInst)

	res, _, err := runImport(t, env, lines)
	require.Error(t, err)
	require.False(t, app.IsBadInput(err))
	require.Equal(t, 3, res.Created)
	require.Equal(t, 1, res.Refused, "%+v", res)
	require.Contains(t, res.Refusals[0].Reason, "not live at the CP")
	require.Equal(t, 4, res.Refusals[0].Line)
	require.Equal(t, store.StatusRunning, env.Workspace(rows[0].WorkspaceID).Status)
	_, err = store.MustFor("").Get(context.Background(), env.Pool, dead)
	require.ErrorIs(t, err, store.ErrNotFound, "the dead instance was registered running")

	tagged, other := uuid.NewString(), uuid.NewString()
	res, _, err = runImport(t, env, fmt.Sprintf(`{"workspace_id":%q,"instance_id":%q,"runtime":"python","tier":1}`, tagged, env.OldInstance(other)))
	require.Error(t, err)
	require.Contains(t, res.Refusals[0].Reason, "the CP tags this instance with workspace "+other)

	res, _, err = runImport(t, env, fmt.Sprintf(`{"workspace_id":%q,"instance_id":%q,"runtime":"python","tier":1}`, dead, deadInst), "--no-cp-check")
	require.NoError(t, err, "--no-cp-check imports without asking the CP")
	require.Equal(t, 1, res.Created)
}

// A CP without the list endpoint stops the import with a clear error
// naming --no-cp-check, and imports nothing.
func TestEnqueueImport_CPWithoutListNamesTheOptOut(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true, Fake: cpfake.Options{NoList: true}})
	lines, rows := fleetLines(env, 2)
	_, out, err := runImport(t, env, lines)
	require.Error(t, err)
	require.True(t, app.IsBadInput(err), "%v", err)
	require.Contains(t, err.Error(), "--no-cp-check")
	require.Empty(t, out)
	_, err = store.MustFor("").Get(context.Background(), env.Pool, rows[0].WorkspaceID)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing imported")

	res, _, err := runImport(t, env, lines, "--no-cp-check")
	require.NoError(t, err)
	require.Equal(t, 2, res.Created)
}

// A removed host row that still holds an instance (the old polling
// loop's unfinished stop) is registered and its terminate-with-delete
// requested in the same transaction, from stdin ("removed": true) and
// from --query's fifth column; a re-run is unchanged.
func TestEnqueueImport_RemovedRowsAreImportedAndStopped(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	gone := uuid.NewString()
	goneInst := env.OldInstance(gone)
	line := fmt.Sprintf(`{"workspace_id":%q,"instance_id":%q,"runtime":"python","tier":1,"removed":true}`, gone, goneInst)

	dry, _, err := runImport(t, env, line, "--dry-run")
	require.NoError(t, err)
	require.Equal(t, []string{gone}, dry.Stops)
	require.Zero(t, countJobs(t, env, jobs.KindTerminate, gone), "a dry run requests nothing")

	res, out, err := runImport(t, env, line)
	require.NoError(t, err, out)
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{gone}, res.Stops)
	ws := env.Workspace(gone)
	require.Equal(t, store.DesiredDeleted, ws.Desired, "its delete is requested with the import")
	require.Equal(t, 1, countJobs(t, env, jobs.KindTerminate, gone))

	res, out, err = runImport(t, env, line)
	require.NoError(t, err, "a re-run is harmless: %s", out)
	require.Equal(t, 1, res.Unchanged)
	require.Empty(t, res.Stops)
	require.Equal(t, 1, countJobs(t, env, jobs.KindTerminate, gone), "no second stop")

	_, err = env.Pool.Exec(ctx, `CREATE TABLE public.hostrows (id uuid, instance_id text, runtime text, tier int, status text)`)
	require.NoError(t, err)
	viaQuery := uuid.NewString()
	_, err = env.Pool.Exec(ctx, `INSERT INTO public.hostrows VALUES ($1, $2, 'python', 1, 'removed')`, viaQuery, env.OldInstance(viaQuery))
	require.NoError(t, err)
	res, out, err = runImport(t, env, "", "--query",
		`SELECT id, instance_id, runtime, tier, status = 'removed' FROM public.hostrows WHERE instance_id IS NOT NULL`)
	require.NoError(t, err, out)
	require.Equal(t, []string{viaQuery}, res.Stops)
	require.Equal(t, store.DesiredDeleted, env.Workspace(viaQuery).Desired)
}

func countJobs(t *testing.T, env *jobtest.Env, kind, id string) int {
	t.Helper()
	var n int
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = $1
		AND args->>'workspace_id' = $2`, kind, id).Scan(&n))
	return n
}
