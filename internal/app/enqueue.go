package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/jobs"
)

// CLI is the enqueue command's world: where it writes and what it reads.
type CLI struct {
	// In is stdin (`enqueue import` reads rows from it).
	In       io.Reader
	Out, Err io.Writer
	Getenv   func(string) string
	// LookupEnv tells an unset variable from an empty one (os.LookupEnv);
	// nil reads a variable as set when Getenv gives a non-empty value.
	LookupEnv func(string) (string, bool)
}

// lookupEnv is LookupEnv, or its fallback over Getenv.
func (cli CLI) lookupEnv(k string) (string, bool) {
	if cli.LookupEnv != nil {
		return cli.LookupEnv(k)
	}
	v := cli.Getenv(k)
	return v, v != ""
}

// command is one enqueue subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, cli CLI, args []string) error
}

// commands lists the subcommands; enqueue_ops.go adds to it.
var commands = map[string]command{
	"provision": {"create or start a workspace (generation+1 when stopped)", runProvision},
	"terminate": {"stop a workspace (--delete: remove it)", runTerminate},
	"restart":   {"stop then start the next generation", runRestart},
}

// RunEnqueue runs one subcommand. Errors wrapping config.ErrUsage (or the
// request's bad-input errors) mean exit 2, with nothing written.
func RunEnqueue(ctx context.Context, cli CLI, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		EnqueueUsage(cli.Out)
		if len(args) == 0 {
			return fmt.Errorf("%w: a subcommand is required", config.ErrUsage)
		}
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		// Not repeated: a pasted secret would be echoed to stderr.
		return fmt.Errorf("%w: unknown subcommand, not repeated here (run `enqueue --help` for the list)", config.ErrUsage)
	}
	return cmd.run(ctx, cli, args[1:])
}

// IsBadInput reports whether err means exit 2.
func IsBadInput(err error) bool {
	return errors.Is(err, config.ErrUsage) || errors.Is(err, jobs.ErrInvalidInput) || errors.Is(err, jobs.ErrUnknownWorkspace)
}

// EnqueueUsage writes `enqueue --help`.
func EnqueueUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: enqueue <subcommand> [flags]   (DATABASE_URL required; `enqueue <subcommand> --help` for flags)\n\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "\nOutput is JSON on stdout (console: the console text, stored nowhere). Exit 0 done, 2 bad input (nothing written), 1 anything else.\n")
}

// common are the settings every subcommand reads.
type common struct {
	DatabaseURL string
	Settings    jobs.Settings
}

func commonSettings(set *config.Set, c *common) {
	d := jobs.DefaultSettings()
	set.EnvString(&c.DatabaseURL, "DATABASE_URL", "Postgres URL (required; env only: it holds the password)")
	schemaSetting(set, &c.Settings.Schema)
	set.Int(&c.Settings.TerminateMaxAttempts, "terminate-max-attempts", "TERMINATE_MAX_ATTEMPTS", d.TerminateMaxAttempts, 1, 100000, "attempt budget of terminate jobs this inserts")
	set.Int(&c.Settings.ProvisionMaxAttempts, "provision-max-attempts", "PROVISION_MAX_ATTEMPTS", d.ProvisionMaxAttempts, 1, 100000, "attempt budget of provision jobs this inserts")
}

// parseCmd parses a subcommand's flags; --help prints them.
func parseCmd(cli CLI, set *config.Set, c *common, args []string, usage string) error {
	err := set.Parse(args)
	if errors.Is(err, errHelp) {
		fmt.Fprintln(cli.Out, "Usage: enqueue "+usage)
		set.Usage(cli.Out)
		return errHelpShown
	}
	if err != nil {
		return err
	}
	if err := set.NoArgs(); err != nil {
		return err
	}
	if err := checkSchema(c.Settings.Schema); err != nil {
		return err
	}
	return checkDatabaseURL(c.DatabaseURL)
}

// withClient opens the database and an insert-only River client for fn.
func withClient(ctx context.Context, c common, fn func(*pgxpool.Pool, *jobs.Client) error) error {
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	client, err := jobs.NewInsertClient(pool, c.Settings)
	if err != nil {
		return err
	}
	return fn(pool, client)
}

// withTx runs fn in one transaction with an insert-only River client, and
// commits only when fn succeeds.
func withTx(ctx context.Context, c common, fn func(pgx.Tx, *jobs.Client) error) error {
	return withClient(ctx, c, func(pool *pgxpool.Pool, client *jobs.Client) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(tx, client) })
	})
}

// resultJSON is what provision/terminate/restart print.
type resultJSON struct {
	Action      string `json:"action"`
	WorkspaceID string `json:"workspace_id"`
	Status      string `json:"status"`
	Desired     string `json:"desired_state"`
	Generation  int64  `json:"generation"`
	InstanceID  string `json:"instance_id,omitempty"`
	JobID       int64  `json:"job_id,omitempty"`
	JobKind     string `json:"job_kind,omitempty"`
	JobState    string `json:"job_state,omitempty"`
}

func printResult(w io.Writer, res jobs.Result) error {
	out := resultJSON{Action: res.Action, WorkspaceID: res.Workspace.ID, Status: string(res.Workspace.Status),
		Desired: string(res.Workspace.Desired), Generation: res.Workspace.Generation, InstanceID: res.Workspace.InstanceID}
	if res.Job != nil {
		out.JobID, out.JobKind, out.JobState = res.Job.ID, res.Job.Kind, string(res.Job.State)
	}
	return printJSON(w, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

func runProvision(ctx context.Context, cli CLI, args []string) error {
	var c common
	var req jobs.ProvisionRequest
	env := envFlag{lookup: cli.lookupEnv}
	set := config.New("enqueue provision", cli.Getenv)
	commonSettings(set, &c)
	set.String(&req.WorkspaceID, "workspace-id", "", "", "workspace UUID (required)")
	set.String(&req.Runtime, "runtime", "", "", "runtime to run (kept from the last generation when empty)")
	set.Int(&req.Tier, "tier", "", 0, 0, jobs.MaxTier, "instance tier (kept from the last generation when 0)")
	set.String(&req.PlatformURL, "platform-url", "", "", "platform URL the workspace calls back (http/https)")
	set.FlagSet().Var(&env, "env", "K=V to pass to the workspace, repeatable; K alone takes the value from this process's environment (keeps secrets out of ps)")
	if err := parseCmd(cli, set, &c, args, "provision --workspace-id UUID [--runtime R] [--tier N] [--platform-url U] [--env K=V]..."); err != nil {
		return err
	}
	if err := env.err; err != nil {
		return err
	}
	if env.set {
		req.Env = env.values
	}
	req.Actor = "enqueue"
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestProvision(ctx, tx, client, req)
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}

func runTerminate(ctx context.Context, cli CLI, args []string) error {
	var c common
	var req jobs.TerminateRequest
	set := config.New("enqueue terminate", cli.Getenv)
	commonSettings(set, &c)
	set.String(&req.WorkspaceID, "workspace-id", "", "", "workspace UUID (required)")
	set.Bool(&req.Delete, "delete", "", false, "remove the workspace (status removed) instead of stopping it")
	if err := parseCmd(cli, set, &c, args, "terminate --workspace-id UUID [--delete]"); err != nil {
		return err
	}
	req.Actor = "enqueue"
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestTerminate(ctx, tx, client, req)
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}

func runRestart(ctx context.Context, cli CLI, args []string) error {
	var c common
	var id string
	set := config.New("enqueue restart", cli.Getenv)
	commonSettings(set, &c)
	set.String(&id, "workspace-id", "", "", "workspace UUID (required)")
	if err := parseCmd(cli, set, &c, args, "restart --workspace-id UUID"); err != nil {
		return err
	}
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestRestart(ctx, tx, client, id, "enqueue")
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}

// envFlag collects repeated --env K=V (or --env K, read from the
// environment). Values are never echoed in errors: they may be secrets.
type envFlag struct {
	lookup func(string) (string, bool)
	values map[string]string
	set    bool
	err    error
}

func (e *envFlag) String() string { return "" }

func (e *envFlag) Set(s string) error {
	e.set = true
	if e.values == nil {
		e.values = map[string]string{}
	}
	k, v, hasValue := strings.Cut(s, "=")
	if k == "" {
		e.err = fmt.Errorf("%w: --env: want K=V or K, got an empty key", config.ErrUsage)
		return e.err
	}
	if !hasValue {
		// An unset name is a typo in a secret's name more often than
		// not: provisioning with "" would ship an empty secret. A name
		// set to the empty string is taken as it is.
		var ok bool
		if v, ok = e.lookup(k); !ok {
			e.err = fmt.Errorf("%w: --env: %s is not set in this environment (use %s= for an empty value)", config.ErrUsage, k, k)
			return e.err
		}
	}
	if _, dup := e.values[k]; dup {
		e.err = fmt.Errorf("%w: --env: %s given twice", config.ErrUsage, k)
		return e.err
	}
	e.values[k] = v
	return nil
}
