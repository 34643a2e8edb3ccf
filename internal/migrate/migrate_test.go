package migrate_test

import (
	"bytes"
	"context"
	"github.com/pressly/goose/v3"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/migrate"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/migrations"
)

func newMigrator(t *testing.T) (*migrate.Migrator, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.NewEmpty(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	m, err := migrate.New(pool, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m, pool
}

func TestUp_RiverValidatorReportsComplete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, pool := newMigrator(t)

	require.Error(t, migrate.ValidateRiver(ctx, pool, ""), "an empty database must not validate")
	var out bytes.Buffer
	require.NoError(t, m.Up(ctx, &out))
	require.Contains(t, out.String(), "00002_river_002_initial_schema.sql")
	require.NoError(t, migrate.ValidateRiver(ctx, pool, ""))
}

func TestDown_UpAgainRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, pool := newMigrator(t)
	require.NoError(t, m.Up(ctx, &bytes.Buffer{}))

	require.NoError(t, m.Down(ctx, &bytes.Buffer{}, 0, false))
	var n int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(*) FROM pg_tables WHERE tablename IN ('river_job', 'workspaces', 'river_migration')`).Scan(&n))
	require.Zero(t, n, "down to 0 must drop River's and the project's tables")

	require.NoError(t, m.Up(ctx, &bytes.Buffer{}))
	require.NoError(t, migrate.ValidateRiver(ctx, pool, ""))
}

func TestDown_RefusesToDropRiverWithUnfinishedJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, pool := newMigrator(t)
	require.NoError(t, m.Up(ctx, &bytes.Buffer{}))
	_, err := pool.Exec(ctx, `INSERT INTO provisioner.river_job (kind, args, max_attempts, queue, state) VALUES ('workspace_terminate', '{}', 5, 'terminate', 'available')`)
	require.NoError(t, err)

	// Down to River's last file (the project's own files, however many)
	// is allowed: River's jobs survive it.
	require.NoError(t, m.Down(ctx, &bytes.Buffer{}, migrations.LastRiverVersion, false))
	err = m.Down(ctx, &bytes.Buffer{}, -1, false)
	require.ErrorIs(t, err, migrate.ErrUnfinishedJobs)
	require.NoError(t, migrate.ValidateRiver(ctx, pool, ""), "a refused down must leave River's schema in place")

	require.NoError(t, m.Down(ctx, &bytes.Buffer{}, -1, true))
	require.Error(t, migrate.ValidateRiver(ctx, pool, ""))
}

func TestRiverFiles_MatchRivermigrate(t *testing.T) {
	t.Parallel()
	files, err := migrations.RiverFiles("")
	require.NoError(t, err)
	require.Len(t, files, int(migrations.LastRiverVersion))
	for _, f := range files {
		got, err := migrations.FS.ReadFile(f.Name)
		require.NoError(t, err, "regenerate with: go run ./migrations/internal/riverdump -dir migrations")
		// The header names River's version; the SQL below it must be River's own.
		require.Equal(t, body(f.SQL), body(string(got)), f.Name)
	}
}

func body(s string) string {
	i := strings.Index(s, "-- +goose Up")
	if i < 0 {
		return s
	}
	return s[i:]
}

// TestGooseCLI_AppliesTheMigrationsIntoTheSchema runs the code path of the
// stock goose CLI, with the README's flags (a -table in the schema, the
// schema as the session's search_path), and checks that the worker's own
// migrator then sees every file applied and River validates there.
func TestGooseCLI_AppliesTheMigrationsIntoTheSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.NewEmpty(t)
	admin, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	_, err = admin.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS provisioner`)
	require.NoError(t, err)

	// What `goose -dir migrations -table provisioner.goose_db_version
	// postgres "$DATABASE_URL&search_path=provisioner" up` does.
	db, err := goose.OpenDBWithDriver("postgres", url+"&search_path=provisioner")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	goose.SetTableName(migrate.VersionTable("provisioner"))
	t.Cleanup(func() { goose.SetTableName("goose_db_version") })
	require.NoError(t, goose.RunContext(ctx, "up", db, "../../migrations"))

	var public int
	require.NoError(t, admin.QueryRow(ctx,
		`SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`).Scan(&public))
	require.Zero(t, public, "nothing of the worker's may land in public")
	require.NoError(t, migrate.ValidateRiver(ctx, admin, ""))
	m, err := migrate.New(admin, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	var out bytes.Buffer
	require.NoError(t, m.Up(ctx, &out))
	require.Equal(t, "up: nothing to do\n", out.String(), "the worker's migrator must see what goose applied")
}
