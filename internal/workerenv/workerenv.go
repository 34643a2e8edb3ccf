// Package workerenv declares every setting the worker reads from flags
// and the environment, and the checks they must pass. It is the one
// definition behind both `worker` (internal/app) and provisioner.FromEnv,
// so the embedded form and the command can never read different
// variables or accept different values.
package workerenv

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// DefaultShutdownTimeout is the worker process's own default (not
// River's or the jobs'); provisioner's hand-built Config takes its zero
// field from here too. The pruner's defaults are jobs.DefaultPruneSettings.
const DefaultShutdownTimeout = 30 * time.Second

// Config is everything the worker reads.
type Config struct {
	DatabaseURL     string
	HTTPAddr        string
	LogLevel        string
	UIUser, UIPass  string
	ShutdownTimeout time.Duration
	CP              cp.Config
	Settings        jobs.Settings
	Options         jobs.Options
	Sweep           jobs.SweepSettings
	SweepEnabled    bool
	Prune           jobs.PruneSettings
}

// Declare declares every setting of the worker on set.
func Declare(set *config.Set, c *Config) {
	d := jobs.DefaultSettings()
	o := jobs.Options{}.WithDefaults(d) // the River client's defaults, from their one place
	c.Sweep = jobs.DefaultSweepSettings()
	c.Prune = jobs.DefaultPruneSettings()
	set.EnvString(&c.DatabaseURL, "DATABASE_URL", fmt.Sprintf("Postgres URL (required; env only: it holds the password); its pool_max_conns sizes the pool, default (provision + terminate workers) / %d + %d, at least pgx's max(4, CPUs)", PoolWorkersPerConn, PoolRiverConns))
	SchemaSetting(set, &c.Settings.Schema)
	set.String(&c.HTTPAddr, "http-addr", "WORKER_HTTP_ADDR", "127.0.0.1:8080", "address for /healthz, /readyz, /metrics and River UI")
	set.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	set.String(&c.UIUser, "ui-user", "RIVER_BASIC_AUTH_USER", "", "River UI basic-auth user (required off loopback)")
	set.EnvSecret(&c.UIPass, "RIVER_BASIC_AUTH_PASS", "River UI basic-auth password (required off loopback; env only)")
	set.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, "on SIGTERM, how long running jobs may finish before they are cancelled (and requeued)")
	set.Duration(&c.Prune.Retention, "event-retention", "EVENT_RETENTION", c.Prune.Retention, "how long workspace timeline events are kept")
	set.Duration(&c.Prune.Interval, "event-prune-interval", "EVENT_PRUNE_INTERVAL", c.Prune.Interval, "how often the timeline pruner runs (a periodic job, leader only, one at a time)")
	set.Int(&c.Prune.BatchSize, "event-prune-batch-size", "EVENT_PRUNE_BATCH_SIZE", c.Prune.BatchSize, 1, 1000000, "timeline events one DELETE removes; a prune repeats until a batch comes back short")
	set.Int(&c.Options.ProvisionWorkers, "provision-workers", "PROVISION_WORKERS", o.ProvisionWorkers, 1, 10000, "concurrent provision jobs in this process")
	set.Int(&c.Options.TerminateWorkers, "terminate-workers", "TERMINATE_WORKERS", o.TerminateWorkers, 1, 10000, "concurrent terminate jobs in this process (their own queue)")
	set.Duration(&c.Options.FetchCooldown, "fetch-cooldown", "FETCH_COOLDOWN", jobs.DefaultFetchCooldown, "River fetch cooldown: lower picks jobs up sooner at more queries")
	set.Duration(&c.Options.FetchPollInterval, "fetch-poll-interval", "FETCH_POLL_INTERVAL", jobs.DefaultFetchPollInterval, "River poll interval when no insert notification arrives")
	set.Duration(&c.Options.RescueAfter, "rescue-after", "RESCUE_AFTER", o.RescueAfter, "a job whose worker died is retried after this (must exceed the job timeouts)")
	set.Duration(&c.Options.DiscardedRetention, "discarded-retention", "DISCARDED_RETENTION", o.DiscardedRetention, "how long dead jobs are kept for operators to re-run")
	set.Duration(&c.Settings.ProvisionTimeout, "provision-timeout", "PROVISION_TIMEOUT", d.ProvisionTimeout, "River timeout of one provision attempt (must exceed CP_TIMEOUT)")
	set.Duration(&c.Settings.TerminateTimeout, "terminate-timeout", "TERMINATE_TIMEOUT", d.TerminateTimeout, "River timeout of one terminate attempt (must exceed CP_TIMEOUT)")
	set.Duration(&c.Settings.BackoffBase, "backoff-base", "BACKOFF_BASE", d.BackoffBase, "first retry delay; doubles each attempt, with jitter")
	set.Duration(&c.Settings.TerminateBackoffCap, "terminate-backoff-cap", "TERMINATE_BACKOFF_CAP", d.TerminateBackoffCap, "longest delay between terminate attempts")
	set.Duration(&c.Settings.ProvisionBackoffCap, "provision-backoff-cap", "PROVISION_BACKOFF_CAP", d.ProvisionBackoffCap, "longest delay between provision attempts")
	set.Int(&c.Settings.TerminateMaxAttempts, "terminate-max-attempts", "TERMINATE_MAX_ATTEMPTS", d.TerminateMaxAttempts, 1, 100000, "terminate attempt budget (default: about three days at the cap)")
	set.Int(&c.Settings.ProvisionMaxAttempts, "provision-max-attempts", "PROVISION_MAX_ATTEMPTS", d.ProvisionMaxAttempts, 1, 100000, "provision attempt budget")
	set.Int(&c.Settings.TerminateStuckAfter, "terminate-stuck-after", "TERMINATE_STUCK_AFTER", d.TerminateStuckAfter, 2, 100000, "a terminate failing the same way this many attempts in a row logs terminate.stuck (and keeps retrying)")
	set.Int(&c.Settings.MaxSnoozes, "max-snoozes", "MAX_SNOOZES", d.MaxSnoozes, 1, 100000, "bound on snoozes per job (Retry-After, 401/403, waiting for a provision)")
	set.Duration(&c.Settings.SnoozeCap, "snooze-cap", "SNOOZE_CAP", d.SnoozeCap, "longest single snooze, whatever Retry-After asks")
	set.Bool(&c.Settings.RefuseAmbiguousWithoutList, "refuse-ambiguous-without-list", "REFUSE_AMBIGUOUS_WITHOUT_LIST", false, "mark a retried provision failed instead of launching again when the CP has no list endpoint")
	set.String(&c.Settings.CompletionSynchronousCommit, "completion-synchronous-commit", "COMPLETION_SYNCHRONOUS_COMMIT", d.CompletionSynchronousCommit,
		"on or off: Postgres's synchronous_commit for the transaction completing each job; off is an opt-in durability trade (a crash of the server re-runs jobs; docs/design.md)")
	set.Bool(&c.SweepEnabled, "sweep", "SWEEP_ENABLED", true, "run the periodic orphan sweep (leader only)")
	set.Duration(&c.Sweep.Interval, "sweep-interval", "SWEEP_INTERVAL", c.Sweep.Interval, "how often the orphan sweep runs")
	set.Duration(&c.Sweep.Grace, "sweep-grace", "SWEEP_GRACE", c.Sweep.Grace, "an unrecorded instance younger than this is left alone (must exceed a provision's longest life)")
	set.Int(&c.Sweep.MaxTerminations, "sweep-max-terminations", "SWEEP_MAX_TERMINATIONS", c.Sweep.MaxTerminations, 1, 1000000, "most terminate jobs one sweep enqueues; the rest are reported")
	set.Float(&c.Sweep.BreakerShare, "sweep-breaker-share", "SWEEP_BREAKER_SHARE", c.Sweep.BreakerShare, 0, 1, "when strays exceed this share of the fleet the sweep acts on none until `enqueue sweep --force`")
	set.Int(&c.Sweep.BreakerMinStrays, "sweep-breaker-min-strays", "SWEEP_BREAKER_MIN_STRAYS", c.Sweep.BreakerMinStrays, 1, 1000000, "below this many strays the breaker share does not apply (one instance of a workspace the database never had always opens it)")
	set.Duration(&c.Sweep.ProvisioningDeadline, "provisioning-deadline", "PROVISIONING_DEADLINE", c.Sweep.ProvisioningDeadline, "a provisioning row older than this with no live provision job is marked failed")
	set.Bool(&c.Sweep.DryRun, "sweep-dry-run", "SWEEP_DRY_RUN", false, "periodic sweeps only report")
}

// Parse reads the worker's settings from args and the environment, the
// CP's from the environment, and checks them (Check). Errors wrap
// config.ErrUsage and name the variable at fault, never its value when
// it may be a secret.
func Parse(name string, args []string, getenv func(string) string) (Config, error) {
	var c Config
	set := config.New(name, getenv)
	Declare(set, &c)
	if err := set.Parse(args); err != nil {
		return c, err
	}
	if err := set.NoArgs(); err != nil {
		return c, err
	}
	if err := CheckSchema(c.Settings.Schema); err != nil {
		return c, err
	}
	if err := CheckDatabaseURL(c.DatabaseURL); err != nil {
		return c, err
	}
	cpCfg, err := cp.ConfigFromEnv(getenv)
	if err != nil {
		return c, fmt.Errorf("%w: %w", config.ErrUsage, err)
	}
	c.CP = cpCfg
	return c, c.Check()
}

// Check refuses settings the worker cannot run safely with, before
// anything connects. It does not look at HTTPAddr: only the command
// serves on an address of its own; an embedding host mounts the handler
// on its own server.
func (c *Config) Check() error {
	if err := CheckSchema(c.Settings.Schema); err != nil {
		return err
	}
	if err := CheckDatabaseURL(c.DatabaseURL); err != nil {
		return err
	}
	if (c.UIUser == "") != (c.UIPass == "") {
		return fmt.Errorf("%w: set both RIVER_BASIC_AUTH_USER and RIVER_BASIC_AUTH_PASS, or neither", config.ErrUsage)
	}
	if v := c.Settings.CompletionSynchronousCommit; v != "" && v != jobs.SynchronousCommitOn && v != jobs.SynchronousCommitOff {
		return fmt.Errorf("%w: COMPLETION_SYNCHRONOUS_COMMIT must be on or off", config.ErrUsage)
	}
	if err := c.Settings.Validate(c.CP.Timeout); err != nil {
		return fmt.Errorf("%w: %w (PROVISION_TIMEOUT/TERMINATE_TIMEOUT vs CP_TIMEOUT)", config.ErrUsage, err)
	}
	if err := jobs.CheckRescueAfter(c.Options.RescueAfter, c.Settings); err != nil {
		return fmt.Errorf("%w: %w", config.ErrUsage, err)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("%w: SHUTDOWN_TIMEOUT must be a positive duration", config.ErrUsage)
	}
	if err := c.Prune.Validate(); err != nil {
		return fmt.Errorf("%w: %w", config.ErrUsage, err)
	}
	if c.SweepEnabled {
		if err := c.Sweep.Validate(c.Settings.ProvisionTimeout, c.Options.RescueAfter); err != nil {
			return fmt.Errorf("%w: %w (SWEEP_GRACE, PROVISIONING_DEADLINE, RESCUE_AFTER)", config.ErrUsage, err)
		}
	}
	return nil
}

// CheckDatabaseURL refuses a missing or malformed DATABASE_URL before
// anything starts (exit 2), instead of failing on first use (exit 1).
// pgx's own message is not shown: it may quote the password.
func CheckDatabaseURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: DATABASE_URL is required (a Postgres URL)", config.ErrUsage)
	}
	if _, err := pgxpool.ParseConfig(raw); err != nil {
		return fmt.Errorf("%w: DATABASE_URL: want a Postgres URL like postgres://user@host:5432/db", config.ErrUsage)
	}
	return nil
}

// SchemaSetting declares DATABASE_SCHEMA, the one setting every binary
// reads for where the worker's objects live (River's tables, its own,
// goose's version table).
func SchemaSetting(set *config.Set, schema *string) {
	set.String(schema, "database-schema", "DATABASE_SCHEMA", store.DefaultSchema,
		"Postgres schema of everything the worker creates (River's tables included); never public, where a host's tables live")
}

// CheckSchema refuses a schema name before anything connects.
func CheckSchema(schema string) error {
	if err := store.ValidateSchema(schema); err != nil {
		return fmt.Errorf("%w: DATABASE_SCHEMA: %w", config.ErrUsage, err)
	}
	return nil
}
