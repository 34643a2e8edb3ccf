package app

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/migrate"
)

// RunMigrate implements `worker migrate up|down|status`.
func RunMigrate(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	var dbURL, schema string
	var to int
	var force bool
	set := config.New("worker migrate", getenv)
	set.EnvString(&dbURL, "DATABASE_URL", "Postgres URL (required; env only: it holds the password)")
	schemaSetting(set, &schema)
	set.Int(&to, "to", "", -1, -1, 1<<30, "down: the version to migrate down to (default: one step)")
	set.Bool(&force, "force", "", false, "down: drop River's tables even while jobs are unfinished (they are lost)")
	if len(args) == 0 {
		return fmt.Errorf("%w: worker migrate up|down|status", config.ErrUsage)
	}
	cmd := args[0]
	if err := set.Parse(args[1:]); err != nil {
		return err
	}
	if err := set.NoArgs(); err != nil {
		return err
	}
	if err := checkSchema(schema); err != nil {
		return err
	}
	if err := checkDatabaseURL(dbURL); err != nil {
		return err
	}
	if cmd != "up" && cmd != "down" && cmd != "status" {
		return fmt.Errorf("%w: unknown migrate command, not repeated here (want up, down or status)", config.ErrUsage)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	m, err := migrate.New(pool, schema)
	if err != nil {
		return err
	}
	defer m.Close()
	switch cmd {
	case "up":
		if err := m.Up(ctx, out); err != nil {
			return err
		}
		return migrate.ValidateRiver(ctx, pool, schema)
	case "down":
		return m.Down(ctx, out, int64(to), force)
	}
	return m.Status(ctx, out)
}

// MigrateUsage writes `worker migrate --help`.
func MigrateUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: worker migrate up|down|status [--to N] [--force]   (DATABASE_URL, DATABASE_SCHEMA)")
	fmt.Fprintln(w, "  down rolls back one migration (or to --to N); it refuses to drop River's tables while jobs are unfinished unless --force.")
}
