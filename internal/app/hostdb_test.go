package app_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// hostSchema is the host platform's own schema as docs/design.md#host-platform
// describes it: a workspaces table (the name the worker's first migration
// collided with), an enum, and its migration runner's table, all in
// public.
const hostSchema = `
CREATE TYPE workspace_status AS ENUM ('provisioning', 'online', 'offline', 'degraded', 'failed', 'removed', 'paused', 'hibernated');
CREATE TABLE workspaces (
	id uuid PRIMARY KEY, name text NOT NULL, tier int, runtime text, parent_id uuid,
	status workspace_status, instance_id text, last_sample_error text, url text, updated_at timestamptz);
CREATE INDEX workspaces_parent_idx ON workspaces (parent_id);
CREATE TABLE schema_migrations (filename text PRIMARY KEY, applied_at timestamptz);
INSERT INTO schema_migrations VALUES ('001_init.up.sql', now());
INSERT INTO workspaces (id, name, status) VALUES ('11111111-1111-1111-1111-111111111111', 'host', 'online');
`

// catalog describes everything in public: relations, their columns and
// types, indexes, constraints, types, functions, and the host's rows.
const catalog = `
SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
	SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
	UNION ALL
	SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
	UNION ALL
	SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
	UNION ALL
	SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
	UNION ALL
	SELECT 'enum ' || enumlabel || ' ' || enumsortorder FROM pg_enum WHERE enumtypid = 'public.workspace_status'::regtype
	UNION ALL
	SELECT 'fn ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
	UNION ALL
	SELECT 'row ' || w::text FROM public.workspaces w
	UNION ALL
	SELECT 'mig ' || filename FROM public.schema_migrations) AS s(x)`

func snapshot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), catalog).Scan(&s))
	return s
}

func ownObjects(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT relname FROM pg_class WHERE relnamespace = 'provisioner'::regnamespace AND relkind = 'r' ORDER BY relname`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

func runMigrate(t *testing.T, url string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	require.NoError(t, app.RunMigrate(context.Background(), args, getenv, &out))
	return out.String()
}

// TestHostDatabase_MigrateUpAndDownLeaveTheHostsCatalogAlone is issue 12's
// acceptance test: the host's schema first, then `worker migrate up`
// (its own code path, on a URL with the default search_path), then a
// provision and a delete through the enqueue CLI, then `migrate down`:
// the host's tables, columns, types, indexes and rows never change, and
// nothing of the worker's lands in public.
func TestHostDatabase_MigrateUpAndDownLeaveTheHostsCatalogAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.NewEmpty(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, hostSchema)
	require.NoError(t, err)
	before := snapshot(t, pool)

	runMigrate(t, url, "up")
	require.Equal(t, before, snapshot(t, pool), "migrate up changed the host's public schema")
	require.Subset(t, ownObjects(t, pool), []string{"goose_db_version", "river_job", "river_migration", "workspaces", "workspace_env", "workspace_events"})

	env := jobtest.New(t, jobtest.Config{DBURL: url})
	id := uuid.NewString()
	_, err = enqueue(t, env, "provision", "--workspace-id", id)
	require.NoError(t, err)
	ws := env.WaitStatus(id, store.StatusRunning)
	require.NotEmpty(t, ws.InstanceID)
	_, err = enqueue(t, env, "terminate", "--workspace-id", id, "--delete")
	require.NoError(t, err)
	env.WaitStatus(id, store.StatusRemoved)
	require.Equal(t, before, snapshot(t, pool), "the worker wrote into the host's public schema")
	require.NoError(t, env.Worker.Stop(ctx))

	runMigrate(t, url, "down", "--to", "0")
	require.Equal(t, before, snapshot(t, pool), "migrate down changed the host's public schema")
	require.Equal(t, []string{"goose_db_version"}, ownObjects(t, pool), "migrate down must drop the worker's own tables, and only those")
}
