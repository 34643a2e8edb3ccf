// Command platform is a small host platform written the way the real one
// is (database/sql + lib/pq, net/http, its own migrations and tables),
// with the provisioning worker embedded:
//
//	platform            serve the API and run the worker until SIGTERM/SIGINT
//	platform migrate    apply the host's own migrations and exit
//	platform import [--dry-run]
//	                    register the rows holding an instance id as owned
//	                    (cutover, before the first sweep); JSON on stdout
//	platform keygen     print a fresh SECRETS_KEY
//
// Settings: PLATFORM_ADDR (default 127.0.0.1:8090), SECRETS_KEY (base64
// of 32 bytes), and the worker's own variables (DATABASE_URL,
// DATABASE_SCHEMA, MOLECULE_ORG_ID, CP_PROVISION_URL, ...).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"example.com/platform/app"
	"example.com/platform/hostdb"
	"example.com/platform/secrets"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, log)
	case "migrate":
		err = migrate(ctx, log)
	case "import":
		err = importRows(ctx, args)
	case "keygen":
		fmt.Println(secrets.NewKey())
	default:
		err = fmt.Errorf("%w: unknown command %q (serve, migrate, import, keygen)", app.ErrUsage, cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, app.ErrUsage), errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(os.Stderr, "platform:", err)
		return 2
	}
	log.Error("platform failed", "err", err)
	return 1
}

func serve(ctx context.Context, log *slog.Logger) error {
	c, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	return app.Run(ctx, c, log)
}

func migrate(ctx context.Context, log *slog.Logger) error {
	db, err := app.OpenDB(os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	applied, err := hostdb.Migrate(ctx, db)
	log.Info("host migrations", "applied", applied)
	return err
}

func importRows(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("platform import", flag.ContinueOnError)
	dryRun := fs.Bool("dry-run", false, "decide every row, change nothing")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", app.ErrUsage, err)
	}
	schema := os.Getenv("DATABASE_SCHEMA")
	db, err := app.OpenDB(os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	rep, err := app.Import(ctx, db, schema, *dryRun)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	if rep.Refused > 0 {
		return fmt.Errorf("%d rows refused (see the report): fix them and run import again", rep.Refused)
	}
	return nil
}
