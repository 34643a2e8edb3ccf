package worker_test

import (
	"context"
	"sync"
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

// hostContract is what a host with both hooks declares on its requests.
var hostContract = jobs.Settings{EnvFromHost: true, OutcomeToHost: true}

// A plain worker (no hooks) on the same schema as the host's hooked
// worker used to fetch about half the provisions: it sent them with no
// env and never told the host's row. With the requests declaring the
// hooks it leaves those jobs to the hooked worker. (Review 13, finding
// 5+11.)
func TestHookFlags_HooklessWorkerOnTheSameSchemaLeavesHookedJobsAlone(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hooked := 0
	h := newHostWorld(t, jobtest.Config{Settings: hostContract, Env: func(context.Context, string) (map[string]string, error) {
		mu.Lock()
		hooked++
		mu.Unlock()
		return map[string]string{"DB_PASSWORD": "from-the-host"}, nil
	}})
	plain := jobtest.New(t, jobtest.Config{DBURL: h.DBURL}) // no hooks, same schema
	const n = 30
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		h.create(t, ids[i])
		h.Provision(jobs.ProvisionRequest{WorkspaceID: ids[i]})
	}
	disagree, emptyEnv := 0, 0
	for _, id := range ids {
		h.WaitStatus(id, store.StatusRunning)
		if h.row(t, id).Status != store.StatusRunning {
			disagree++
		}
		for _, env := range sentEnv(t, plain, id) {
			if len(env) == 0 {
				emptyEnv++
			}
		}
	}
	t.Logf("host rows left behind: %d/%d; provisions sent without the host's env: %d", disagree, n, emptyEnv)
	require.Zero(t, disagree, "worker rows running whose host rows never heard")
	require.Zero(t, emptyEnv, "provisions sent with no env at all")
}

// A job needing a hook the only worker lacks is never worked: no CP call,
// the row stays provisioning, job.hook_missing says why, and once its
// budget is spent it is discarded with ErrHookMissing, which the sweep
// re-runs like an env hook failure instead of marking the row failed.
func TestHookFlags_WorkerWithoutTheHookDoesNotWorkTheJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{
		EnvFromHost: true, ProvisionMaxAttempts: 1, MaxSnoozes: 2}})
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	j := finalJob(t, e, job.ID)
	require.Equal(t, rivertype.JobStateDiscarded, j.State)
	require.Contains(t, j.Errors[len(j.Errors)-1].Error, jobs.ErrHookMissing.Error())
	require.Empty(t, requestsOf(e.CP, cpfake.RouteProvision), "no CP call without the hook")
	require.Equal(t, store.StatusProvisioning, e.Workspace(id).Status)
	require.Contains(t, e.Logs.String(), jobs.EvHookMissing)

	_, err := e.Pool.Exec(context.Background(),
		`UPDATE workspaces SET status_changed_at = now() - interval '2 hours' WHERE id = $1`, id)
	require.NoError(t, err)
	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, map[string]int{"provision_env_hook_discarded": 1}, res.Orphans)
	require.Zero(t, res.MarkedFailed)
	require.NotEqual(t, store.StatusFailed, e.Workspace(id).Status)
}

// Every kind that tells the host is marked by a declaring insert client;
// an undeclaring one marks nothing, so such jobs run anywhere as before.
func TestHookFlags_InsertClientMarksItsJobs(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Settings: hostContract})
	plainIns, err := jobs.NewInsertClient(e.Pool, jobtest.FastSettings())
	require.NoError(t, err)
	cases := []struct {
		name   string
		client *jobs.Client
		want   string
	}{
		{"declaring", e.Insert, `{"env": true, "outcome": true}`},
		{"plain", plainIns, ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := uuid.NewString()
			var prov jobs.Result
			require.NoError(t, e.Tx(func(tx pgx.Tx) (err error) {
				prov, err = jobs.RequestProvision(context.Background(), tx, c.client, jobs.ProvisionRequest{WorkspaceID: id})
				return err
			}))
			require.Equal(t, c.want, hostHooksOf(t, e, prov.Job.ID))
			var stop jobs.Result
			require.NoError(t, e.Tx(func(tx pgx.Tx) (err error) {
				stop, err = jobs.RequestTerminate(context.Background(), tx, c.client, jobs.TerminateRequest{WorkspaceID: id})
				return err
			}))
			want := c.want
			if want != "" {
				want = `{"outcome": true}`
			}
			require.Equal(t, want, hostHooksOf(t, e, stop.Job.ID))
		})
	}
}

func hostHooksOf(t *testing.T, e *jobtest.Env, jobID int64) string {
	t.Helper()
	var s string
	require.NoError(t, e.Pool.QueryRow(context.Background(),
		`SELECT coalesce(metadata->'host_hooks', 'null'::jsonb)::text FROM river_job WHERE id = $1`, jobID).Scan(&s))
	if s == "null" {
		return ""
	}
	return s
}

// With EnvFromHost, a request that carries Env is refused before anything
// is written: the env would sit in plain jsonb beside a hook that
// supplies it anyway.
func TestHookFlags_EnvFromHostRefusesARequestWithEnv(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Settings: hostContract})
	id := uuid.NewString()
	for _, call := range []func(pgx.Tx) error{
		func(tx pgx.Tx) error {
			_, err := jobs.RequestProvision(context.Background(), tx, e.Insert,
				jobs.ProvisionRequest{WorkspaceID: id, Env: map[string]string{"K": "secret"}})
			return err
		},
		func(tx pgx.Tx) error {
			_, err := jobs.RequestProvisionMany(context.Background(), tx, e.Insert,
				[]jobs.ProvisionRequest{{WorkspaceID: id, Env: map[string]string{"K": "secret"}}})
			return err
		},
	} {
		err := e.Tx(call)
		require.ErrorIs(t, err, jobs.ErrEnvWithHostEnv)
		require.NotContains(t, err.Error(), "secret")
	}
	var rows, envs int
	require.NoError(t, e.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM workspaces), (SELECT count(*) FROM workspace_env)`).Scan(&rows, &envs))
	require.Zero(t, rows+envs, "nothing written")
	// Without Env the same client is fine.
	require.Equal(t, jobs.ActionCreated, e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Action)
}

// A job a worker without the host's hooks fetched and snoozed before Work
// (hookGuard) has a longer attempted_by but never ran. Read as a retry,
// it went down the adoption path, and with RefuseAmbiguousWithoutList on
// a CP without a list it failed the workspace without one CP call.
// (Issue 13 re-review, R3.)
func TestProvision_RefetchThatNeverRanIsAFirstAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Fake: cpfake.Options{NoList: true},
		Settings: jobs.Settings{RefuseAmbiguousWithoutList: true}})
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	// What a hookless worker's fetch and the guard's snooze leave behind.
	_, err := e.Pool.Exec(ctx, `UPDATE river_job SET attempted_by = ARRAY['hookless-worker'] WHERE id = $1`, job.ID)
	require.NoError(t, err)
	e.Start()
	ws := e.WaitStatus(id, store.StatusRunning)
	require.NotEmpty(t, ws.InstanceID)
	require.Len(t, e.CP.Live(id), 1)
}
