package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// batchFroms are the starting rows a batch mixes (every column of the table).
var batchFroms = []string{fromNone, fromProvisioning, fromRunning, fromStopping, fromStopped,
	fromRemoved, fromFailed, fromFailedWithInstID}

// A batch over every starting row does, row by row, what the single
// request does (docs/design.md#requests), whether the row took the set-based
// path or the single one.
func TestRequestMany_MixedBatchFollowsTheStateTable(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	table := stateTable()
	for _, req := range []string{reqProvision, reqTerminate, reqDelete} {
		t.Run(req, func(t *testing.T) {
			var cells []cell
			var ids []string
			for _, from := range batchFroms {
				if from == fromNone && req != reqProvision {
					continue // an unknown id refuses the whole batch: its own test
				}
				c := newCell(t, e, from)
				cells = append(cells, c)
				ids = append(ids, c.before.ID)
			}
			var results []jobs.Result
			require.NoError(t, e.Tx(func(tx pgx.Tx) (err error) {
				results, err = requestMany(context.Background(), tx, e, req, ids)
				return err
			}))
			require.Len(t, results, len(cells))
			for i, c := range cells {
				t.Run(orNone(c.from), func(t *testing.T) {
					checkCell(t, e, c, results[i], nil, table[req][c.from])
				})
			}
		})
	}
}

func requestMany(ctx context.Context, tx pgx.Tx, e *jobtest.Env, req string, ids []string) ([]jobs.Result, error) {
	if req == reqProvision {
		reqs := make([]jobs.ProvisionRequest, len(ids))
		for i, id := range ids {
			reqs[i] = jobs.ProvisionRequest{WorkspaceID: id}
		}
		return jobs.RequestProvisionMany(ctx, tx, e.Insert, reqs)
	}
	return jobs.RequestTerminateMany(ctx, tx, e.Insert, ids, jobs.TerminateOptions{Delete: req == reqDelete})
}

func TestRequestTerminateMany_UnknownIDsRefuseTheBatchNamingThem(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	running := newCell(t, e, fromRunning)
	unknown := []string{uuid.NewString(), uuid.NewString()}
	err := e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminateMany(context.Background(), tx, e.Insert,
			[]string{unknown[0], running.before.ID, unknown[1]}, jobs.TerminateOptions{Delete: true})
		return err
	})
	require.ErrorIs(t, err, jobs.ErrUnknownWorkspace)
	for _, id := range unknown {
		require.Contains(t, err.Error(), id)
	}
	require.NotContains(t, err.Error(), running.before.ID, "only the unknown ids are named")
	require.Equal(t, store.StatusRunning, e.Workspace(running.before.ID).Status)
	require.Equal(t, running.jobsBefore, workspaceJobs(t, e, running.before.ID), "nothing written")
}

func TestRequestMany_DuplicateIDsAreRefused(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	running := newCell(t, e, fromRunning)
	fresh := uuid.NewString()
	err := e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestProvisionMany(ctx, tx, e.Insert, []jobs.ProvisionRequest{
			{WorkspaceID: fresh, Runtime: "a"}, {WorkspaceID: strings.ToUpper(fresh), Runtime: "b"}})
		return err
	})
	require.ErrorIs(t, err, jobs.ErrDuplicateInBatch)
	require.ErrorIs(t, err, jobs.ErrInvalidInput)
	require.Contains(t, err.Error(), fresh)
	_, err = store.MustFor("").Get(ctx, e.Pool, fresh)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing written")

	err = e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminateMany(ctx, tx, e.Insert,
			[]string{running.before.ID, running.before.ID}, jobs.TerminateOptions{})
		return err
	})
	require.ErrorIs(t, err, jobs.ErrDuplicateInBatch)
	require.Equal(t, store.StatusRunning, e.Workspace(running.before.ID).Status, "nothing written")
}

// Each driver: a rolled-back batch leaves no row, job or event; a
// committed one gives jobs the worker completes, provisions then a
// subtree delete.
func TestDriversMany_RollbackLeavesNothingCommitCompletes(t *testing.T) {
	t.Parallel()
	for _, d := range driverCases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			env, url := hostEnv(t)
			run := d.open(t, env, url)
			ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
			reqs := make([]jobs.ProvisionRequest, len(ids))
			for i, id := range ids {
				reqs[i] = jobs.ProvisionRequest{WorkspaceID: id, Runtime: "r" + string(rune('a'+i)), Env: map[string]string{"K": id}}
			}
			require.NoError(t, run(false, func(r requests) error {
				res, err := r.provisionMany(reqs)
				require.Len(t, res, len(ids))
				return err
			}))
			for _, id := range ids {
				_, err := store.MustFor("").Get(context.Background(), env.Pool, id)
				require.ErrorIs(t, err, store.ErrNotFound)
				n, ev := counts(t, env, id)
				require.Zero(t, n, "no job")
				require.Zero(t, ev, "no event")
			}

			require.NoError(t, run(true, func(r requests) error { _, err := r.provisionMany(reqs); return err }))
			for i, id := range ids {
				ws := env.WaitStatus(id, store.StatusRunning)
				require.Equal(t, reqs[i].Runtime, ws.Runtime, "each row got its own request")
				stored, err := store.MustFor("").Env(context.Background(), env.Pool, id)
				require.NoError(t, err)
				require.Equal(t, map[string]string{"K": id}, stored, "each row got its own env")
			}
			require.NoError(t, run(false, func(r requests) error {
				_, err := r.terminateMany(ids, jobs.TerminateOptions{Delete: true})
				return err
			}))
			require.Equal(t, store.StatusRunning, env.Workspace(ids[0]).Status, "a rolled-back delete changes nothing")
			require.NoError(t, run(true, func(r requests) error {
				_, err := r.terminateMany(ids, jobs.TerminateOptions{Delete: true, Actor: "subtree"})
				return err
			}))
			for _, id := range ids {
				env.WaitStatus(id, store.StatusRemoved)
				stored, err := store.MustFor("").Env(context.Background(), env.Pool, id)
				require.NoError(t, err)
				require.Empty(t, stored, "a delete drops the env")
				var unfinished int
				require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM provisioner.river_job
					WHERE args->>'workspace_id' = $1 AND state <> 'completed'`, id).Scan(&unfinished))
				require.Zero(t, unfinished, "every job the batches inserted completed")
				_, ev := counts(t, env, id)
				require.NotZero(t, ev, "the timeline has the batch's lines")
			}
		})
	}
}

type statementCounter struct{ n atomic.Int64 }

// TraceQueryStart counts every statement but River's insert notification:
// River rate-limits it per queue by the clock (a second insert soon after
// the first sends none), so counting it made the comparison below fail
// about one run in three with 5 statements against 6.
func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "name: PGNotifyMany") {
		return ctx
	}
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The set-based paths send as many statements for 40 workspaces as for
// 4: a loop of single requests would send several per workspace.
func TestRequestMany_StatementsDoNotGrowWithTheBatch(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(e.Pool.Config().ConnString())
	require.NoError(t, err)
	counter := &statementCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	client, err := jobs.NewInsertClient(pool, jobs.Settings{})
	require.NoError(t, err)
	statements := func(n int, req string) int64 {
		ids := make([]string, n)
		reqs := make([]jobs.ProvisionRequest, n)
		for i := range ids {
			ids[i] = uuid.NewString()
			reqs[i] = jobs.ProvisionRequest{WorkspaceID: ids[i], Env: map[string]string{"K": "v"}}
		}
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := jobs.RequestProvisionMany(ctx, tx, client, reqs)
			return err
		}))
		var terminate []string
		for _, id := range ids {
			if req == reqTerminate {
				terminate = append(terminate, id) // provisioning rows with a live job to cancel
			}
		}
		before := counter.n.Load()
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if req == reqProvision {
				for i := range reqs {
					reqs[i].WorkspaceID = uuid.NewString()
				}
				_, err := jobs.RequestProvisionMany(ctx, tx, client, reqs)
				return err
			}
			_, err := jobs.RequestTerminateMany(ctx, tx, client, terminate, jobs.TerminateOptions{Delete: true})
			return err
		}))
		return counter.n.Load() - before
	}
	require.Equal(t, statements(4, reqProvision), statements(40, reqProvision), "provision")
	small, large := statements(4, reqTerminate), statements(40, reqTerminate)
	// Each never-attempted provision job is cancelled with its own
	// JobCancelTx (documented): everything else is one statement per table.
	require.Equal(t, small+36, large, "terminate: only the per-job cancels grow")
}
