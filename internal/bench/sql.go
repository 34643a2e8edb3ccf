package bench

import (
	"context"
	"fmt"
	"github.com/molecule-ai/provision-worker/internal/store"

	"github.com/jackc/pgx/v5/pgconn"
)

// The bench's own SQL: seeding at a scale
// the store's one-row functions would take minutes to reach. None of it
// runs in the worker; the worker's SQL stays in internal/store.

// seedRows writes one running row per (id, instance) pair and `stopped`
// rows without an instance, in one statement each, then VACUUM ANALYZE:
// the sweep's plans see the table as it is, and its visibility map is
// what autovacuum leaves on a fleet's table at rest (it vacuums after
// inserts too, since Postgres 13). Without it, the first sweep after the
// seed paid a heap fetch per index-only probe that no settled table
// would, and autovacuum could start in the middle of the measurement.
func seedRows(ctx context.Context, pool execer, ids, instances []string, stopped int) error {
	_, err := pool.Exec(ctx, benchStore.Q(`
		INSERT INTO {schema}.workspaces (id, status, desired_state, instance_id, provision_nonce, runtime)
		SELECT w, 'running', 'running', i, md5(w::text), 'bench'
		FROM unnest($1::uuid[], $2::text[]) AS t(w, i)`), ids, instances)
	if err != nil {
		return fmt.Errorf("seed running rows: %w", err)
	}
	_, err = pool.Exec(ctx, benchStore.Q(`
		INSERT INTO {schema}.workspaces (id, status, desired_state, provision_nonce, runtime)
		SELECT gen_random_uuid(), 'stopped', 'stopped', md5(g::text), 'bench'
		FROM generate_series(1, $1::int) AS g`), stopped)
	if err != nil {
		return fmt.Errorf("seed stopped rows: %w", err)
	}
	if _, err := pool.Exec(ctx, benchStore.Q(`VACUUM (ANALYZE) {schema}.workspaces`)); err != nil {
		return fmt.Errorf("vacuum analyze: %w", err)
	}
	return nil
}

// execer runs a statement: a pool, or a connection of its own.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// benchStore is the worker's store in the default schema, where the bench's
// scratch databases are migrated.
var benchStore = store.MustFor(store.DefaultSchema)
