// Command cpsim runs the fake control plane (internal/cp/cpfake) on
// loopback, so the worker can be run and broken locally without a real CP:
//
//	go run ./cmd/cpsim --boot-time 2s --fault-lost 0.05
//
// Every flag can also be set through the env var shown by --help; a flag
// given on the command line wins. The CP credential variables of the client
// (MOLECULE_CP_SHARED_SECRET / PROVISION_SHARED_SECRET, ADMIN_TOKEN,
// CP_ADMIN_API_TOKEN) are enforced when set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "cpsim:", err)
		os.Exit(2)
	}
}

type settings struct {
	addr        string
	allowRemote bool
	opts        cpfake.Options
	fleet       fleet
}

// fleet is a seeded fleet of running instances (cpfake.SeedFleet), so a
// bench can sweep a million instances held in this process, not its own.
type fleet struct {
	n    int
	seed uint64
	age  time.Duration // launched this long before the start
}

// run serves until ctx ends, logging JSON lines to logs.
func run(ctx context.Context, args []string, getenv func(string) string, logs io.Writer) error {
	s, err := parse(args, getenv)
	if err != nil {
		return err
	}
	if !s.allowRemote && !config.IsLoopback(s.addr) {
		return fmt.Errorf("--addr %s is not a loopback address; pass --allow-remote to serve it anyway", s.addr)
	}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	s.opts.OnServe = func(x cpfake.Served) {
		logger.Info("request", "method", x.Method, "route", x.Route, "status", x.Status, "fault", x.Fault,
			"workspace_id", x.WorkspaceID, "instance_id", x.InstanceID, "duration", x.Duration)
	}
	srv, err := cpfake.Listen(s.addr, s.opts)
	if err != nil {
		return err
	}
	// Seeded before "cpsim listening" is logged: whoever waits for that
	// line sees the whole fleet.
	if err := srv.SeedFleet(s.fleet.seed, s.fleet.n, cpfake.StateRunning, time.Now().Add(-s.fleet.age)); err != nil {
		srv.Close()
		return err
	}
	logger.Info("cpsim listening", "url", srv.URL, "org_id", s.opts.OrgID,
		"seed", s.opts.Seed, "auth", s.opts.SharedSecret != "" || s.opts.AdminToken != "",
		"fleet", s.fleet.n, "fleet_seed", s.fleet.seed)
	<-ctx.Done()
	logger.Info("cpsim shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// parse reads flags, each defaulting to its env var, then the credentials.
func parse(args []string, getenv func(string) string) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("cpsim", flag.ContinueOnError)
	e := &envFlags{fs: fs, getenv: getenv}
	orgDefault := getenv("MOLECULE_ORG_ID")
	if orgDefault == "" {
		orgDefault = "dev-org"
	}
	e.str(&s.addr, "addr", "CPSIM_ADDR", "127.0.0.1:8081", "listen address (loopback unless --allow-remote)")
	e.boolean(&s.allowRemote, "allow-remote", "CPSIM_ALLOW_REMOTE", "allow a non-loopback --addr")
	e.str(&s.opts.OrgID, "org-id", "CPSIM_ORG_ID", orgDefault, "org id the fake serves (default from MOLECULE_ORG_ID)")
	e.dur(&s.opts.Latency, "latency", "CPSIM_LATENCY", 50*time.Millisecond, "latency added to every request")
	e.dur(&s.opts.BootTime, "boot-time", "CPSIM_BOOT_TIME", 2*time.Second, "pending → running after this")
	e.dur(&s.opts.ShutdownTime, "shutdown-time", "CPSIM_SHUTDOWN_TIME", time.Second, "shutting-down → terminated after this")
	e.share(&s.opts.Faults.Error5xx, "fault-5xx", "CPSIM_FAULT_5XX", "share of requests answered 503 without acting")
	e.share(&s.opts.Faults.Timeout, "fault-timeout", "CPSIM_FAULT_TIMEOUT", "share of requests stalled until the client gives up")
	e.share(&s.opts.Faults.Reset, "fault-reset", "CPSIM_FAULT_RESET", "share of requests whose connection is reset without acting")
	e.share(&s.opts.Faults.LostAnswer, "fault-lost", "CPSIM_FAULT_LOST", "share of requests acted on, then reset (answer lost)")
	e.boolean(&s.opts.IgnoreIdempotency, "ignore-idempotency", "CPSIM_IGNORE_IDEMPOTENCY", "ignore Idempotency-Key (retries launch duplicates)")
	e.boolean(&s.opts.NoList, "no-list", "CPSIM_NO_LIST", "answer 404 on the list endpoint (a CP without it)")
	var dialect string
	e.str(&dialect, "dialect", "CPSIM_DIALECT", cpfake.DialectFull.String(),
		"how answers are written: full, or plain-go (null for empty lists, no optional fields, 204 on terminate)")
	var fleetN, fleetSeed int64
	e.int64(&fleetN, "fleet", "CPSIM_FLEET", 0, "start with this many running instances (cpfake.FleetMember(fleet-seed, 0..n-1))")
	e.int64(&fleetSeed, "fleet-seed", "CPSIM_FLEET_SEED", 1, "which seeded fleet --fleet adds (≥ 0)")
	e.dur(&s.fleet.age, "fleet-age", "CPSIM_FLEET_AGE", 24*time.Hour, "the seeded fleet was launched this long ago")
	var seed int64
	e.int64(&seed, "seed", "CPSIM_SEED", 0, "seed for fault draws; 0 picks a time-based seed (logged at start)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cpsim [flags]\n\nA fake control plane on loopback. Flags (env var, default):\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nCredentials, enforced when set (same variables as the worker):\n"+
			"  MOLECULE_CP_SHARED_SECRET (or PROVISION_SHARED_SECRET), ADMIN_TOKEN, CP_ADMIN_API_TOKEN (default: the shared secret)\n"+
			"\nGET /fake/stats answers the request counters and the live instance count as JSON.\n")
	}
	if e.err != nil {
		return s, e.err
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		// Not repeated: a secret pasted in the wrong place would be echoed.
		return s, fmt.Errorf("unexpected arguments (%d), not repeated here", fs.NArg())
	}
	d, ok := cpfake.ParseDialect(dialect)
	if !ok {
		return s, fmt.Errorf("CPSIM_DIALECT: want full or plain-go, got %q", dialect)
	}
	s.opts.Dialect = d
	if fleetN < 0 || fleetSeed < 0 {
		return s, fmt.Errorf("--fleet and --fleet-seed must be ≥ 0, got %d and %d", fleetN, fleetSeed)
	}
	s.fleet.n, s.fleet.seed = int(fleetN), uint64(fleetSeed)
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s.opts.Seed = seed
	s.opts.SharedSecret = firstNonEmpty(getenv("MOLECULE_CP_SHARED_SECRET"), getenv("PROVISION_SHARED_SECRET"))
	s.opts.AdminToken = getenv("ADMIN_TOKEN")
	s.opts.AdminAPIKey = firstNonEmpty(getenv("CP_ADMIN_API_TOKEN"), s.opts.SharedSecret)
	return s, validShares(s.opts.Faults)
}

func validShares(f cpfake.Faults) error {
	for _, v := range []float64{f.Error5xx, f.Timeout, f.Reset, f.LostAnswer} {
		if v < 0 || v > 1 {
			return fmt.Errorf("fault shares must be in [0,1], got %v", v)
		}
	}
	return nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// envFlags registers flags whose default comes from an env var, and names
// that env var in the usage text.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	err    error
}

func (e *envFlags) usage(env, text string) string { return text + " [env " + env + "]" }

func (e *envFlags) fail(env, want, got string) {
	if e.err == nil {
		e.err = fmt.Errorf("%s: want %s, got %q", env, want, got)
	}
}

func (e *envFlags) str(p *string, name, env, def, text string) {
	if v := e.getenv(env); v != "" {
		def = v
	}
	e.fs.StringVar(p, name, def, e.usage(env, text))
}

func (e *envFlags) boolean(p *bool, name, env, text string) {
	def := false
	if v := e.getenv(env); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.fail(env, "true or false", v)
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, e.usage(env, text))
}

func (e *envFlags) dur(p *time.Duration, name, env string, def time.Duration, text string) {
	if v := e.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			e.fail(env, "a Go duration like 50ms", v)
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, e.usage(env, text))
}

func (e *envFlags) share(p *float64, name, env, text string) {
	def := 0.0
	if v := e.getenv(env); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			e.fail(env, "a share in [0,1] like 0.05", v)
		}
		def = f
	}
	e.fs.Float64Var(p, name, def, e.usage(env, text))
}

func (e *envFlags) int64(p *int64, name, env string, def int64, text string) {
	if v := e.getenv(env); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			e.fail(env, "an integer", v)
		}
		def = n
	}
	e.fs.Int64Var(p, name, def, e.usage(env, text))
}
