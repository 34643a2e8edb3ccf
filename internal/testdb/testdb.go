// Package testdb gives each test its own freshly migrated Postgres
// database, cloned from a template, so tests run in parallel (and CI runs
// beside a developer's) without ever seeing each other's rows.
package testdb

import (
	"github.com/molecule-ai/provision-worker/internal/store"
	"strings"

	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/migrate"
)

// AdminURL is the maintenance connection used to create databases. Tests
// honour TEST_DATABASE_URL (any database on the server; CREATE DATABASE
// rights needed), else the local trust-auth server.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// New creates a migrated database for t, dropped when t ends, and returns
// its URL.
func New(t testing.TB) string {
	t.Helper()
	url, drop, err := Create(context.Background())
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(drop)
	return url
}

// Create makes a migrated database outside a test (examples, benches)
// and returns its URL and a func that drops it.
func Create(ctx context.Context) (string, func(), error) {
	templateOnce.Do(func() { templateName, templateErr = buildTemplate(ctx) })
	if templateErr != nil {
		return "", nil, fmt.Errorf("template: %w", templateErr)
	}
	name := "pw_t_" + randomHex(6)
	if err := adminExec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, templateName)); err != nil {
		return "", nil, fmt.Errorf("create %s: %w", name, err)
	}
	drop := func() {
		_ = adminExec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	}
	return urlFor(name), drop, nil
}

// NewPool is New plus a pool closed when t ends.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := WithSearchPath(New(t))
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("testdb: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, url
}

// NewEmpty creates an unmigrated database (for migration tests).
func NewEmpty(t testing.TB) string {
	t.Helper()
	name := "pw_e_" + randomHex(6)
	if err := adminExec(context.Background(), `CREATE DATABASE `+name); err != nil {
		t.Fatalf("testdb: create %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = adminExec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	})
	return urlFor(name)
}

// buildTemplate migrates a template database named after the migrations'
// content, once per server; concurrent test binaries serialise on an
// advisory lock so only one builds it.
func buildTemplate(ctx context.Context) (string, error) {
	name := "pw_tmpl_" + migrationsDigest()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", fmt.Errorf("connect to the test Postgres (TEST_DATABASE_URL or 127.0.0.1:5432): %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock(727274)`) }()

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up template: %w", err)
	}
	if exists {
		return name, nil
	}
	building := name + "_b"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return "", fmt.Errorf("drop stale template: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	if err := migrateURL(ctx, urlFor(building)); err != nil {
		return "", err
	}
	// Renamed only once complete, so a crash mid-build never leaves a
	// half-migrated template behind for the next run to trust.
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, building, name)); err != nil {
		return "", fmt.Errorf("rename template: %w", err)
	}
	return name, nil
}

func migrateURL(ctx context.Context, url string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return fmt.Errorf("template pool: %w", err)
	}
	defer pool.Close()
	m, err := migrate.New(pool, "")
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up(ctx, io.Discard)
}

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// urlFor swaps the database name in AdminURL.
func urlFor(db string) string {
	cfg, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		return AdminURL()
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, db)
}

// WithSearchPath is url with the session's search_path set to the worker's
// schema, then public. Tests that read and seed the project's tables with
// their own SQL use it; the worker's own statements name the schema and
// never depend on it (TestHostDatabase_* run the worker on plain URLs
// beside a host's own workspaces table in public).
func WithSearchPath(url string) string {
	sep := "&"
	if !strings.Contains(url, "?") {
		sep = "?"
	}
	return url + sep + "search_path=" + store.DefaultSchema + ",public"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
