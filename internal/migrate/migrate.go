// Package migrate runs the goose migrations in package migrations for the
// `worker migrate` subcommand and for tests, and guards the one step that
// can lose work: dropping River's tables while jobs are unfinished.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/migrations"
)

// ErrUnfinishedJobs is returned by Down when the step would drop River's
// tables while jobs that have not finished still exist: dropping them
// would silently forget every pending stop, which is exactly the leak
// this project exists to prevent.
var ErrUnfinishedJobs = errors.New("migrate: unfinished jobs exist; refusing to drop River's tables (use --force to drop them anyway)")

// Migrator runs goose over one Postgres schema of one database.
type Migrator struct {
	st       *store.Store
	pool     *pgxpool.Pool // the migrator's own: search_path is the schema
	db       *sql.DB
	provider *goose.Provider
}

// VersionTable is goose's version table in schema: the stock goose CLI
// needs the same name (-table) to see what `worker migrate` applied.
func VersionTable(schema string) string { return schema + ".goose_db_version" }

// New opens a goose provider for schema ("" is store.DefaultSchema) on a
// pool of its own, copied from pool's settings with search_path set to
// schema alone. The migration files are plain SQL without a schema (River
// dumps its own that way, and the stock goose CLI must run them), so the
// session decides where they create things: the schema, never public,
// where the host's tables (one of them named workspaces) live. Two
// replicas migrating at once serialise on goose's session advisory lock.
func New(pool *pgxpool.Pool, schema string) (*Migrator, error) {
	st, err := store.For(schema)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["search_path"] = st.Schema()
	cfg.MaxConns = 2
	own, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("migrate: pool: %w", err)
	}
	db := stdlib.OpenDBFromPool(own)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("migrate: session locker: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithTableName(VersionTable(st.Schema())))
	if err != nil {
		_ = db.Close()
		own.Close()
		return nil, fmt.Errorf("migrate: goose provider: %w", err)
	}
	return &Migrator{st: st, pool: own, db: db, provider: provider}, nil
}

// Close releases the migrator's own pool (not the one it was copied from).
func (m *Migrator) Close() error {
	err := m.provider.Close()
	m.pool.Close()
	return err
}

// Up creates the schema when missing, then applies every pending
// migration and reports each one to w.
func (m *Migrator) Up(ctx context.Context, w io.Writer) error {
	if _, err := m.pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{m.st.Schema()}.Sanitize()); err != nil {
		return fmt.Errorf("migrate up: create schema: %w", err)
	}
	results, err := m.provider.Up(ctx)
	for _, r := range results {
		fmt.Fprintf(w, "up %s (%s)\n", r.Source.Path, r.Duration)
	}
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	if len(results) == 0 {
		fmt.Fprintln(w, "up: nothing to do")
	}
	return nil
}

// Down rolls back one migration, or every migration above to. Crossing
// River's file while unfinished jobs exist needs force.
func (m *Migrator) Down(ctx context.Context, w io.Writer, to int64, force bool) error {
	current, err := m.provider.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate down: current version: %w", err)
	}
	target := to
	if target < 0 {
		target = current - 1
	}
	if current >= migrations.LastRiverVersion && target < migrations.LastRiverVersion && !force {
		n, err := m.unfinishedJobs(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: count unfinished jobs: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%w: %d unfinished", ErrUnfinishedJobs, n)
		}
	}
	results, err := m.provider.DownTo(ctx, max(target, 0))
	for _, r := range results {
		fmt.Fprintf(w, "down %s (%s)\n", r.Source.Path, r.Duration)
	}
	if err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// Status prints each migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context, w io.Writer) error {
	statuses, err := m.provider.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	for _, s := range statuses {
		at := "pending"
		if s.State == goose.StatePending {
			fmt.Fprintf(w, "%-8s %s\n", at, s.Source.Path)
			continue
		}
		fmt.Fprintf(w, "%-8s %s (%s)\n", "applied", s.Source.Path, s.AppliedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return nil
}

func (m *Migrator) unfinishedJobs(ctx context.Context) (int64, error) {
	var n int64
	err := m.db.QueryRowContext(ctx,
		m.st.Q(`SELECT count(*) FROM {schema}.river_job WHERE state NOT IN `+riverjob.InList(riverjob.FinalizedStates()))).Scan(&n)
	return n, err
}

// ValidateRiver asks River's own migrator whether its schema is complete,
// so a hand-edited or partial dump is caught before the worker starts.
func ValidateRiver(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	st, err := store.For(schema)
	if err != nil {
		return err
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: st.Schema()})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	res, err := migrator.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("validate river schema: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("river schema incomplete: %v (run `worker migrate up`)", res.Messages)
	}
	return nil
}
