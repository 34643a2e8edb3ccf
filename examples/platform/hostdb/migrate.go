// Package hostdb is the example host's own database: its migrations and
// every SQL statement it runs against its own tables, in one place. It
// never touches the worker's schema; the worker's tables are reached only
// through the jobs package.
package hostdb

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
)

// files are the host's migrations: NNN_name.sql, applied in name order.
//
//go:embed migrations/*.sql
var files embed.FS

// migrateLock serialises two replicas booting at once: without it both
// would read "not applied" and the second would fail on the first's rows.
const migrateLock = 7_311_001

// Migrate applies every migration file not yet recorded in
// public.schema_migrations, each in its own transaction with its record,
// the way the real host's runner does on every boot. It returns the files
// it applied.
func Migrate(ctx context.Context, db *sql.DB) ([]string, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLock)
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS public.schema_migrations (
		filename text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: schema_migrations: %w", err)
	}
	names, err := fileNames()
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, name := range names {
		done, err := applyOne(ctx, conn, name)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, name)
		}
	}
	return applied, nil
}

// fileNames lists the migration files in the order they apply.
func fileNames() ([]string, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read files: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// applyOne runs one file and records it, unless it is recorded already.
func applyOne(ctx context.Context, conn *sql.Conn, name string) (bool, error) {
	body, err := fs.ReadFile(files, "migrations/"+name)
	if err != nil {
		return false, fmt.Errorf("migrate: read %s: %w", name, err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: begin %s: %w", name, err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `INSERT INTO public.schema_migrations (filename) VALUES ($1)
		ON CONFLICT (filename) DO NOTHING`, name)
	if err != nil {
		return false, fmt.Errorf("migrate: record %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // applied before
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return false, fmt.Errorf("migrate: apply %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate: commit %s: %w", name, err)
	}
	return true, nil
}
