package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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

// command is one enqueue subcommand: its row in --help, the flags line
// `enqueue <name> --help` prints, and what runs it.
type command struct {
	name    string
	summary string // one line of `enqueue --help`
	usage   string // `enqueue <name> --help`'s first line (and any text after it)
	run     func(ctx context.Context, cli CLI, args []string, usage string) error
}

// commands is every enqueue subcommand, in the order --help lists them
// (by name). It is the one place a subcommand is added: RunEnqueue
// dispatches from it and EnqueueUsage prints it, so the help cannot list
// a command that does not run or miss one that does.
var commands = []command{
	{"console", "print a workspace's serial console through the CP's admin route (not stored)",
		"console --workspace-id UUID   (CP settings from the env, as the worker's; CP_ADMIN_API_TOKEN for /cp/admin/*)", runConsole},
	{"import", "cutover: register the host's running workspaces as owned (JSON lines on stdin, or --query)",
		importUsage, runImport},
	{"provision", "create or start a workspace (generation+1 when stopped)",
		"provision --workspace-id UUID [--runtime R] [--tier N] [--platform-url U] [--env K=V]...", runProvision},
	{"restart", "stop then start the next generation",
		"restart --workspace-id UUID", runRestart},
	{"retry", "re-queue jobs by id, or by kind and state (dead terminates after an outage)",
		"retry --job-id N [--job-id N]...  |  retry --kind K --state S [--limit L]", runRetry},
	{"sweep", "run one orphan sweep now (--dry-run, --force past the breaker, --wait for its counts)",
		"sweep [--dry-run] [--force] [--wait]", runSweep},
	{"terminate", "stop a workspace (--delete: remove it)",
		"terminate --workspace-id UUID [--delete]", runTerminate},
	{"timeline", "print a workspace's events, attempts and errors in time order",
		"timeline --workspace-id UUID [--json]", runTimeline},
}

// findCommand looks a subcommand up by name.
func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
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
	cmd, ok := findCommand(args[0])
	if !ok {
		// Not repeated: a pasted secret would be echoed to stderr.
		return fmt.Errorf("%w: unknown subcommand, not repeated here (run `enqueue --help` for the list)", config.ErrUsage)
	}
	return cmd.run(ctx, cli, args[1:], cmd.usage)
}

// IsBadInput reports whether err means exit 2.
func IsBadInput(err error) bool {
	return errors.Is(err, config.ErrUsage) || errors.Is(err, jobs.ErrInvalidInput) || errors.Is(err, jobs.ErrUnknownWorkspace)
}

// EnqueueUsage writes `enqueue --help`.
func EnqueueUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: enqueue <subcommand> [flags]   (DATABASE_URL required; `enqueue <subcommand> --help` for flags)\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
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
