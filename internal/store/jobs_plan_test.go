package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// explainingDB is a store.DB that EXPLAINs every query it runs, with the
// same arguments, before running it.
type explainingDB struct {
	pool  *pgxpool.Pool
	plans []string
}

func (d *explainingDB) explain(ctx context.Context, sql string, args []any) error {
	var plan string
	if err := d.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
		return err
	}
	d.plans = append(d.plans, plan)
	return nil
}

func (d *explainingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return d.pool.Exec(ctx, sql, args...)
}

func (d *explainingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := d.explain(ctx, sql, args); err != nil {
		return nil, err
	}
	return d.pool.Query(ctx, sql, args...)
}

func (d *explainingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := d.explain(ctx, sql, args); err != nil {
		return errRow{err}
	}
	return d.pool.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// TestLiveJobs_FindJobsThroughTheArgsIndexOnly pins the plan of the
// args @> lookups on a river_job that has run many jobs since its last
// ANALYZE and VACUUM (here: never, as between autovacuum runs): the GIN
// index on args must be the only index used. With kind and state left
// indexable, Postgres ANDed river_job_kind with
// river_job_prioritized_fetching_index, which hold every job of the kind
// and every dead available/running version: the soak's terminate requests
// took 20 ms at its start and 270 ms two minutes later. Postgres picks
// that plan only when its statistics are stale; with autovacuum on in
// the test server it could analyze the table first, and this test then
// passes without the fix.
func TestLiveJobs_FindJobsThroughTheArgsIndexOnly(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor(store.DefaultSchema)
	// Many finished jobs of the kind, each passed through available and
	// running as River runs them, leaving dead versions behind.
	_, err := pool.Exec(ctx, `
		INSERT INTO provisioner.river_job (args, kind, max_attempts, queue, state)
		SELECT jsonb_build_object('workspace_id', gen_random_uuid()::text, 'instance_id', 'i-' || g),
			$1, 25, 'provision', 'available'
		FROM generate_series(1, 20000) g`, riverjob.KindProvision)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE provisioner.river_job SET state = 'running', attempt = 1, attempted_at = now()`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE provisioner.river_job SET state = 'completed', finalized_at = now()`)
	require.NoError(t, err)
	ws := uuid.NewString()
	_, err = pool.Exec(ctx, `
		INSERT INTO provisioner.river_job (args, kind, max_attempts, queue, state)
		VALUES (jsonb_build_object('workspace_id', $1::text, 'instance_id', 'i-live'), $2, 25, 'provision', 'available'),
			(jsonb_build_object('instance_id', 'i-live'), $3, 25, 'provision', 'available')`,
		ws, riverjob.KindProvision, riverjob.KindInstanceTerminate)
	require.NoError(t, err)

	db := &explainingDB{pool: pool}
	live, err := st.LiveJobs(ctx, db, riverjob.KindProvision, ws)
	require.NoError(t, err)
	require.Len(t, live, 1)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	locked, err := st.LockLiveJobs(ctx, db, riverjob.KindProvision, ws)
	require.NoError(t, err)
	require.Len(t, locked, 1)
	many, err := st.LockLiveJobsMany(ctx, db, riverjob.KindProvision, []string{ws})
	require.NoError(t, err)
	require.Len(t, many, 1)
	with, err := st.WorkspacesWithLiveJobs(ctx, db, riverjob.KindProvision, []string{ws, uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{ws: true}, with)

	require.Len(t, db.plans, 4)
	for i, plan := range db.plans {
		require.Contains(t, plan, "river_job_args_index", "lookup %d must use the GIN index on args", i)
		for _, idx := range []string{"river_job_kind", "river_job_prioritized_fetching_index"} {
			require.False(t, strings.Contains(plan, `"`+idx+`"`), "the lookup used %s, whose entries grow with every job run:\n%s", idx, plan)
		}
	}
}

// TestLiveJobs_ReadBoundedPendingList pins migration 00011: River's GIN
// index on args keeps new entries in a pending list that every args @>
// lookup reads whole until something flushes it, and without autovacuum
// nothing but an insert over gin_pending_list_limit does. 5,000 jobs
// inserted and run (each version adds entries) fill a 4 MB list with
// ~500 pages, read by each lookup; at 256 kB a lookup reads at most ~32.
// Counted in buffers, not timed.
func TestLiveJobs_ReadBoundedPendingList(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	for range 5 {
		_, err := pool.Exec(ctx, `
			INSERT INTO provisioner.river_job (args, kind, max_attempts, queue, state)
			SELECT jsonb_build_object('workspace_id', gen_random_uuid()::text, 'generation', 1, 'nonce', md5(g::text)),
				$1, 25, 'provision', 'available'
			FROM generate_series(1, 1000) g`, riverjob.KindProvision)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE provisioner.river_job SET state = 'running', attempt = 1, attempted_at = now() WHERE state = 'available'`)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE provisioner.river_job SET state = 'completed', finalized_at = now() WHERE state = 'running'`)
		require.NoError(t, err)
	}
	var plan string
	err := pool.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
		SELECT id FROM provisioner.river_job WHERE args @> jsonb_build_object('workspace_id', $1::text)`,
		uuid.NewString()).Scan(&plan)
	require.NoError(t, err)
	var out []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal([]byte(plan), &out))
	require.Len(t, out, 1)
	require.LessOrEqual(t, out[0].Plan.Hit+out[0].Plan.Read, 64,
		"an args lookup read the whole GIN pending list:\n%s", plan)
}
