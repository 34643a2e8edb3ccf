package provisioner

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
	"github.com/molecule-ai/provision-worker/jobs"
)

// CPConfig is how the worker reaches the control plane. It mirrors the
// CP client's own configuration field for field (see
// docs/design.md#configuration): Timeout
// 0 is the client's default (30s).
type CPConfig struct {
	BaseURL      string
	OrgID        string
	SharedSecret string
	AdminToken   string
	AdminAPIKey  string
	Timeout      time.Duration
}

// Config is everything the embedded worker reads. FromEnv fills it from
// the same variables as cmd/worker; a host may also build it by hand,
// where a zero field means the command's default.
type Config struct {
	DatabaseURL string
	CP          CPConfig
	Settings    jobs.Settings // Settings.Schema: where its tables live
	Options     jobs.Options
	Sweep       jobs.SweepSettings // zero: jobs.DefaultSweepSettings()
	// SweepEnabled runs the periodic orphan sweep on the leader. Unlike
	// the command (SWEEP_ENABLED defaults to true), a hand-built Config
	// leaves it off until the host says so: on a live fleet the sweep
	// comes after the import (README, adoption).
	SweepEnabled    bool
	UIUser, UIPass  string
	ShutdownTimeout time.Duration // zero: 30s
	// Prune configures the timeline pruner, a periodic job the leader
	// runs; zero fields: jobs.DefaultPruneSettings() (90 days' retention,
	// hourly, 10000 events a DELETE).
	Prune jobs.PruneSettings
	// Logger receives the worker's JSON events; the zero Logger drops them.
	Logger zerolog.Logger
	// Env and OnOutcome are the host's hooks; both optional. With them
	// set, build the handlers' insert client with jobs.Settings
	// EnvFromHost and OutcomeToHost, so no worker of the schema without
	// the hooks works those jobs; the worker's own inserts are marked
	// with the hooks it has.
	Env       jobs.EnvFunc
	OnOutcome jobs.OutcomeFunc
}

// Defaults a hand-built Config gets for zero fields: the command's,
// declared once where the command's settings are (internal/workerenv,
// jobs).
const (
	DefaultShutdownTimeout = workerenv.DefaultShutdownTimeout
	// DefaultEventRetention is Prune.Retention's default.
	DefaultEventRetention = jobs.DefaultEventRetention
	// DefaultFetchCooldown is the command's, not River's 100ms: pickup in
	// ~13ms rather than ~50ms, at more queries.
	DefaultFetchCooldown = jobs.DefaultFetchCooldown
)

// FromEnv reads a Config from the worker's environment variables (pass
// os.Getenv): the same declarations `worker` parses, so every variable in
// `worker --help` and the README's settings table means the same here.
// WORKER_HTTP_ADDR is not used: the host serves Handler on its own
// server. Logger writes JSON to stderr at LOG_LEVEL; replace it to use
// the host's. Errors name the variable at fault, never a secret's value.
func FromEnv(getenv func(string) string) (Config, error) {
	c, err := workerenv.Parse("provisioner", nil, getenv)
	if err != nil {
		return Config{}, fmt.Errorf("provisioner: %w", err)
	}
	log, err := obs.NewLogger(os.Stderr, c.LogLevel)
	if err != nil {
		return Config{}, fmt.Errorf("provisioner: %w: LOG_LEVEL: %w", config.ErrUsage, err)
	}
	return Config{
		DatabaseURL:     c.DatabaseURL,
		CP:              publicCP(c.CP),
		Settings:        c.Settings,
		Options:         c.Options,
		Sweep:           c.Sweep,
		SweepEnabled:    c.SweepEnabled,
		UIUser:          c.UIUser,
		UIPass:          c.UIPass,
		ShutdownTimeout: c.ShutdownTimeout,
		Prune:           c.Prune,
		Logger:          log,
	}, nil
}

// Validate applies the checks `worker` applies before anything connects:
// schema name, database URL, UI credentials in pairs, job timeouts over
// the CP timeout, RESCUE_AFTER over the job timeouts, and the sweep's
// settings. Zero fields are taken as their defaults first, as New does.
// Messages name the setting (by its env var) and never carry a secret.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.CP.OrgID == "" {
		return fmt.Errorf("provisioner: %w: CP.OrgID (MOLECULE_ORG_ID) is required", config.ErrUsage)
	}
	w := c.internal()
	if err := w.Check(); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	// The CP client's own checks (base URL, timeout); building it opens
	// no connection.
	if _, err := cp.New(w.CP); err != nil {
		return fmt.Errorf("provisioner: %w: CP: %w", config.ErrUsage, err)
	}
	return nil
}

// withDefaults fills zero fields the way the command's defaults do.
func (c Config) withDefaults() Config {
	c.Settings = c.Settings.Or(jobs.DefaultSettings())
	if c.CP.Timeout == 0 {
		c.CP.Timeout = cp.DefaultTimeout
	}
	if c.CP.BaseURL == "" {
		c.CP.BaseURL = cp.DefaultBaseURL
	}
	if c.Options.FetchCooldown <= 0 {
		c.Options.FetchCooldown = DefaultFetchCooldown
	}
	if c.Options.FetchPollInterval <= 0 {
		c.Options.FetchPollInterval = jobs.DefaultFetchPollInterval
	}
	c.Options = c.Options.WithDefaults(c.Settings)
	if c.Sweep == (jobs.SweepSettings{}) {
		c.Sweep = jobs.DefaultSweepSettings()
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	c.Prune = c.Prune.Or(jobs.DefaultPruneSettings())
	return c
}

// internal is c as the shared checks see it.
func (c Config) internal() workerenv.Config {
	return workerenv.Config{
		DatabaseURL:     c.DatabaseURL,
		UIUser:          c.UIUser,
		UIPass:          c.UIPass,
		ShutdownTimeout: c.ShutdownTimeout,
		Prune:           c.Prune,
		CP:              c.CP.internal(),
		Settings:        c.Settings,
		Options:         c.Options,
		Sweep:           c.Sweep,
		SweepEnabled:    c.SweepEnabled,
	}
}

func (c CPConfig) internal() cp.Config {
	return cp.Config{BaseURL: c.BaseURL, OrgID: c.OrgID, SharedSecret: c.SharedSecret,
		AdminToken: c.AdminToken, AdminAPIKey: c.AdminAPIKey, Timeout: c.Timeout}
}

func publicCP(c cp.Config) CPConfig {
	return CPConfig{BaseURL: c.BaseURL, OrgID: c.OrgID, SharedSecret: c.SharedSecret,
		AdminToken: c.AdminToken, AdminAPIKey: c.AdminAPIKey, Timeout: c.Timeout}
}
