package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "github.com/lib/pq"              // the "postgres" database/sql driver, as the host platform uses
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// requests are the three request kinds bound to one open transaction.
type requests struct {
	provision func(jobs.ProvisionRequest) (jobs.Result, error)
	terminate func(jobs.TerminateRequest) (jobs.Result, error)
	restart   func(id string) (jobs.Result, error)

	provisionMany func([]jobs.ProvisionRequest) ([]jobs.Result, error)
	terminateMany func([]string, jobs.TerminateOptions) ([]jobs.Result, error)
}

// inTx runs fn in a new transaction of one driver, then commits it or
// rolls it back.
type inTx func(commit bool, fn func(requests) error) error

type driverCase struct {
	name string
	open func(t *testing.T, env *jobtest.Env, url string) inTx
}

var driverCases = []driverCase{
	{"pgx", func(t *testing.T, env *jobtest.Env, _ string) inTx {
		return func(commit bool, fn func(requests) error) error {
			ctx := context.Background()
			tx, err := env.Pool.Begin(ctx)
			if err != nil {
				return err
			}
			return finish(ctx, commit, fn(requests{
				provision: func(r jobs.ProvisionRequest) (jobs.Result, error) {
					return jobs.RequestProvision(ctx, tx, env.Insert, r)
				},
				terminate: func(r jobs.TerminateRequest) (jobs.Result, error) {
					return jobs.RequestTerminate(ctx, tx, env.Insert, r)
				},
				restart: func(id string) (jobs.Result, error) { return jobs.RequestRestart(ctx, tx, env.Insert, id, "test") },
				provisionMany: func(rs []jobs.ProvisionRequest) ([]jobs.Result, error) {
					return jobs.RequestProvisionMany(ctx, tx, env.Insert, rs)
				},
				terminateMany: func(ids []string, o jobs.TerminateOptions) ([]jobs.Result, error) {
					return jobs.RequestTerminateMany(ctx, tx, env.Insert, ids, o)
				},
			}), tx.Commit, tx.Rollback)
		}
	}},
	{"lib/pq", sqlDriver("postgres")},
	{"pgx-stdlib", sqlDriver("pgx")},
}

func sqlDriver(driverName string) func(t *testing.T, env *jobtest.Env, url string) inTx {
	return func(t *testing.T, _ *jobtest.Env, url string) inTx {
		db, err := sql.Open(driverName, url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		client, err := jobs.NewInsertClientSQL(db, jobs.Settings{})
		require.NoError(t, err)
		return func(commit bool, fn func(requests) error) error {
			ctx := context.Background()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			return finish(ctx, commit, fn(requests{
				provision: func(r jobs.ProvisionRequest) (jobs.Result, error) { return jobs.RequestProvision(ctx, tx, client, r) },
				terminate: func(r jobs.TerminateRequest) (jobs.Result, error) { return jobs.RequestTerminate(ctx, tx, client, r) },
				restart:   func(id string) (jobs.Result, error) { return jobs.RequestRestart(ctx, tx, client, id, "test") },
				provisionMany: func(rs []jobs.ProvisionRequest) ([]jobs.Result, error) {
					return jobs.RequestProvisionMany(ctx, tx, client, rs)
				},
				terminateMany: func(ids []string, o jobs.TerminateOptions) ([]jobs.Result, error) {
					return jobs.RequestTerminateMany(ctx, tx, client, ids, o)
				},
			}), func(context.Context) error { return tx.Commit() }, func(context.Context) error { return tx.Rollback() })
		}
	}
}

func finish(ctx context.Context, commit bool, err error, commitFn, rollbackFn func(context.Context) error) error {
	if err != nil || !commit {
		return errors.Join(err, rollbackFn(ctx))
	}
	return commitFn(ctx)
}

// hostEnv is a worker on a database that also holds a host's own
// workspaces table in public, reached through URLs with the default
// search_path: a statement that forgot its schema hits the host's table.
func hostEnv(t *testing.T) (*jobtest.Env, string) {
	url := testdb.New(t)
	env := jobtest.New(t, jobtest.Config{DBURL: url})
	_, err := env.Pool.Exec(context.Background(),
		`CREATE TABLE public.workspaces (id uuid PRIMARY KEY, name text NOT NULL, status text)`)
	require.NoError(t, err)
	return env, url
}

func counts(t *testing.T, env *jobtest.Env, id string) (jobsN, events int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, env.Pool.QueryRow(ctx,
		`SELECT count(*) FROM provisioner.river_job WHERE args->>'workspace_id' = $1`, id).Scan(&jobsN))
	require.NoError(t, env.Pool.QueryRow(ctx,
		`SELECT count(*) FROM provisioner.workspace_events WHERE workspace_id = $1`, id).Scan(&events))
	return jobsN, events
}

func TestDrivers_RollbackLeavesNoRowNoJobNoEvent(t *testing.T) {
	t.Parallel()
	for _, d := range driverCases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			env, url := hostEnv(t)
			run := d.open(t, env, url)
			id := uuid.NewString()
			require.NoError(t, run(false, func(r requests) error {
				res, err := r.provision(jobs.ProvisionRequest{WorkspaceID: id, Env: map[string]string{"K": "v"}})
				require.NotNil(t, res.Job, "the provision job is inserted in the caller's transaction")
				return err
			}))
			_, err := store.MustFor("").Get(context.Background(), env.Pool, id)
			require.ErrorIs(t, err, store.ErrNotFound)
			n, ev := counts(t, env, id)
			require.Zero(t, n, "no job")
			require.Zero(t, ev, "no event")
		})
	}
}

func TestDrivers_CommitGivesJobsTheWorkerCompletes(t *testing.T) {
	t.Parallel()
	for _, d := range driverCases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			env, url := hostEnv(t)
			run := d.open(t, env, url)
			id := uuid.NewString()
			do := func(fn func(r requests) (jobs.Result, error)) {
				t.Helper()
				require.NoError(t, run(true, func(r requests) error { _, err := fn(r); return err }))
			}
			do(func(r requests) (jobs.Result, error) {
				return r.provision(jobs.ProvisionRequest{WorkspaceID: id, Env: map[string]string{"K": "v"}})
			})
			first := env.WaitStatus(id, store.StatusRunning)
			stored, err := store.MustFor("").Env(context.Background(), env.Pool, id)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"K": "v"}, stored, "the env written through this driver reads back")
			do(func(r requests) (jobs.Result, error) { return r.restart(id) })
			env.WaitFor("restarted", func() bool {
				ws := env.Workspace(id)
				return ws.Status == store.StatusRunning && ws.Generation == first.Generation+1
			})
			require.NoError(t, run(false, func(r requests) error {
				_, err := r.terminate(jobs.TerminateRequest{WorkspaceID: id, Delete: true})
				return err
			}))
			require.Equal(t, store.StatusRunning, env.Workspace(id).Status, "a rolled-back delete changes nothing")
			do(func(r requests) (jobs.Result, error) {
				return r.terminate(jobs.TerminateRequest{WorkspaceID: id, Delete: true})
			})
			env.WaitStatus(id, store.StatusRemoved)
			var unfinished int
			require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM provisioner.river_job
				WHERE args->>'workspace_id' = $1 AND state <> 'completed'`, id).Scan(&unfinished))
			require.Zero(t, unfinished, "every job the requests inserted completed")
		})
	}
}

func TestDrivers_GetWorkspaceReadsTheViewOnEachDriver(t *testing.T) {
	t.Parallel()
	env, url := hostEnv(t)
	id := uuid.NewString()
	want := env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	dbs := map[string]jobs.DB{"pgx": jobs.PgxDB(env.Pool)}
	for _, driver := range []string{"postgres", "pgx"} {
		db, err := sql.Open(driver, url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		dbs["sql/"+driver] = jobs.SQLDB(db)
	}
	for name, db := range dbs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ws, err := jobs.GetWorkspace(ctx, db, "", id)
			require.NoError(t, err)
			require.Equal(t, jobs.StatusRunning, ws.Status)
			require.Equal(t, jobs.DesiredRunning, ws.Desired)
			require.Equal(t, want.InstanceID, ws.InstanceID)
			require.Equal(t, want.Generation, ws.Generation)
			require.True(t, ws.StatusChangedAt.Equal(want.StatusChangedAt))
			_, err = jobs.GetWorkspace(ctx, db, "", uuid.NewString())
			require.ErrorIs(t, err, jobs.ErrUnknownWorkspace)
		})
	}
}
