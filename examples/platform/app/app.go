// Package app wires the example host: its database and migrations, its
// handlers, and the embedded worker with both hooks, on one mux and one
// graceful shutdown. cmd-like code (flags, exit codes) stays in main.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	_ "github.com/lib/pq" // the host's driver

	"github.com/molecule-ai/provision-worker/jobs"
	"github.com/molecule-ai/provision-worker/provisioner"

	"example.com/platform/api"
	"example.com/platform/hostdb"
	"example.com/platform/secrets"
)

// Config is what the host reads on top of the worker's own variables
// (provisioner.FromEnv: DATABASE_URL, DATABASE_SCHEMA, the CP's, ...).
type Config struct {
	Addr       string // PLATFORM_ADDR
	SecretsKey string // SECRETS_KEY, base64 of 32 bytes
	Worker     provisioner.Config
}

// ErrUsage marks a configuration error (exit 2).
var ErrUsage = errors.New("usage")

// DefaultAddr is where the host listens unless PLATFORM_ADDR says.
const DefaultAddr = "127.0.0.1:8090"

// ConfigFromEnv reads the host's settings and the worker's.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Addr: getenv("PLATFORM_ADDR"), SecretsKey: getenv("SECRETS_KEY")}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, err := secrets.NewBox(c.SecretsKey); err != nil {
		return c, fmt.Errorf("%w: SECRETS_KEY: %w", ErrUsage, err)
	}
	wc, err := provisioner.FromEnv(getenv)
	if err != nil {
		return c, fmt.Errorf("%w: worker settings: %w", ErrUsage, err)
	}
	c.Worker = wc
	// The worker's handler (River UI can retry and cancel every stop) is
	// mounted on this listener, so the worker's own rule applies to it.
	if c.Worker.UIUser == "" && !isLoopback(c.Addr) {
		return c, fmt.Errorf("%w: RIVER_BASIC_AUTH_USER and RIVER_BASIC_AUTH_PASS are required when PLATFORM_ADDR (%s) is not a loopback address", ErrUsage, c.Addr)
	}
	return c, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OpenDB opens the host's one *sql.DB on lib/pq, sized as the real host's.
func OpenDB(url string) (*sql.DB, error) {
	db, err := sql.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(25)
	return db, nil
}

// EnvHook is the worker's env hook: it decrypts the workspace's secrets
// from the host's own table at the moment the provision calls the CP.
// The worker stores none of it. The error names neither a key nor a value
// (the worker filters hook errors too; this is the host's own care).
func EnvHook(db *sql.DB, box *secrets.Box) jobs.EnvFunc {
	return func(ctx context.Context, workspaceID string) (map[string]string, error) {
		sealed, err := hostdb.Secrets(ctx, db, workspaceID)
		if err != nil {
			return nil, err
		}
		env := make(map[string]string, len(sealed))
		for i, s := range sealed {
			v, err := box.Open(workspaceID, s.Key, s.Value, s.Version)
			if err != nil {
				return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(sealed), err)
			}
			env[s.Key] = v
		}
		// The real host's plugin env mutators would add their values here.
		return env, nil
	}
}

// Run migrates the host's tables, starts the embedded worker and serves
// the host's API with the worker's handlers until ctx ends, then shuts
// down: HTTP first (no new requests), then the worker (running jobs
// finish, or are requeued without spending an attempt).
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	box, err := secrets.NewBox(c.SecretsKey)
	if err != nil {
		return err
	}
	db, err := OpenDB(c.Worker.DatabaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	applied, err := hostdb.Migrate(ctx, db)
	if err != nil {
		return err
	}
	log.Info("host migrations", "applied", applied)

	wc := c.Worker
	wc.Env = EnvHook(db, box)
	wc.OnOutcome = hostdb.ApplyOutcome
	worker, err := provisioner.New(ctx, wc)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	// The requests declare the hooks on their jobs, so a worker without
	// them on this schema leaves the jobs to this one (job.hook_missing).
	ins := wc.Settings
	ins.EnvFromHost, ins.OutcomeToHost = true, true
	client, err := jobs.NewInsertClientSQL(db, ins)
	if err != nil {
		return err
	}
	// Not ctx: the worker stops through Stop, with its own timeout, after
	// the HTTP server has stopped taking requests.
	if err := worker.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("worker start: %w", err)
	}
	mux := http.NewServeMux()
	(&api.API{DB: db, Client: client, Schema: wc.Settings.Schema, Box: box, Log: log}).Register(mux)
	MountWorker(mux, worker.Handler())
	err = serve(ctx, c.Addr, mux, log)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout(wc)+5*time.Second)
	defer cancel()
	if serr := worker.Stop(stopCtx); serr != nil {
		err = errors.Join(err, fmt.Errorf("worker stop: %w", serr))
	}
	return err
}

// MountWorker puts the worker's handler on the host's mux at the paths it
// serves. River UI builds its links from its own prefix (/riverui/), so
// it is mounted at that path rather than under a stripped prefix.
func MountWorker(mux *http.ServeMux, h http.Handler) {
	for _, p := range []string{"/riverui/", "/riverui", "/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, h)
	}
}

// shutdownTimeout is the worker's own: a hand-built Config's zero is
// provisioner.DefaultShutdownTimeout, as it is in New.
func shutdownTimeout(c provisioner.Config) time.Duration {
	if c.ShutdownTimeout > 0 {
		return c.ShutdownTimeout
	}
	return provisioner.DefaultShutdownTimeout
}

// serve listens on addr until ctx ends, then shuts the server down.
func serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	// The address actually bound (PLATFORM_ADDR may say port 0).
	log.Info("platform listening", "addr", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
