package bench

import (
	"context"
	"fmt"
	"github.com/molecule-ai/provision-worker/internal/store"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The bench's own SQL: seeding at a scale
// the store's one-row functions would take minutes to reach. None of it
// runs in the worker; the worker's SQL stays in internal/store.

// seedRows writes one running row per (id, instance) pair and `stopped`
// rows without an instance, in one statement each, then ANALYZE so the
// sweep's plans see the table as it is.
func seedRows(ctx context.Context, pool *pgxpool.Pool, ids, instances []string, stopped int) error {
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
	if _, err := pool.Exec(ctx, benchStore.Q(`ANALYZE {schema}.workspaces`)); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// benchStore is the worker's store in the default schema, where the bench's
// scratch databases are migrated.
var benchStore = store.MustFor(store.DefaultSchema)
