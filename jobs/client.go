package jobs

import (
	"github.com/molecule-ai/provision-worker/internal/store"

	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// Options configure the worker's River client.
type Options struct {
	ProvisionWorkers int // concurrent provisions (default 20)
	TerminateWorkers int // concurrent stops, reserved for them (default 20)
	// FetchCooldown and FetchPollInterval trade pickup latency for load:
	// River's defaults (100 ms, 1 s) give p50 ~50 ms; 5 ms / 20 ms give
	// ~13 ms at more queries per second.
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// RescueAfter is how long a job whose worker died stays running before
	// River's rescuer retries it; it must exceed the job timeouts.
	RescueAfter time.Duration
	// DiscardedRetention keeps dead jobs long enough for an operator to
	// re-run them (River's default deletes them after 7 days).
	DiscardedRetention time.Duration
	// Sweep configures the periodic orphan sweep; nil disables it.
	Sweep *SweepSettings
	// Logger receives River's own logs.
	Logger *slog.Logger
	// ID names the client (River UI shows it); default River's.
	ID string
}

func (o Options) withDefaults(s Settings) Options {
	if o.ProvisionWorkers <= 0 {
		o.ProvisionWorkers = 20
	}
	if o.TerminateWorkers <= 0 {
		o.TerminateWorkers = 20
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = max(s.ProvisionTimeout, s.TerminateTimeout) + time.Minute
	}
	if o.DiscardedRetention <= 0 {
		o.DiscardedRetention = 30 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	return o
}

// NewWorkerClient builds the River client that works every kind, with
// terminates on their own queue (invariant 8).
func NewWorkerClient(pool *pgxpool.Pool, deps *Deps, opts Options) (*Client, error) {
	deps.Settings = deps.Settings.withDefaults()
	deps.Pool = pool
	deps.cpTimeout = cpTimeoutOf(deps.CP)
	deps.CP = newListGuard(deps.CP, deps.Settings, deps.Log)
	if _, err := store.For(deps.Settings.Schema); err != nil {
		return nil, err
	}
	opts = opts.withDefaults(deps.Settings)
	workers := river.NewWorkers()
	river.AddWorker(workers, &ProvisionWorker{policy[ProvisionArgs]{deps: deps}})
	river.AddWorker(workers, &TerminateWorker{policy[TerminateArgs]{deps: deps, stop: true}})
	river.AddWorker(workers, &InstanceTerminateWorker{policy[InstanceTerminateArgs]{deps: deps, stop: true}})
	queues := map[string]river.QueueConfig{
		QueueProvision: {MaxWorkers: opts.ProvisionWorkers},
		QueueTerminate: {MaxWorkers: opts.TerminateWorkers},
	}
	cfg := &river.Config{
		ID:      opts.ID,
		Schema:  deps.Settings.Schema,
		Queues:  queues,
		Workers: workers,
		// Its own inserts carry the hooks it has (workerHooks); the guard
		// leaves jobs needing a hook it lacks to a worker that has it.
		Hooks:             []rivertype.Hook{&budgetHook{settings: workerHooks(deps)}, &hookGuard{deps: deps}},
		FetchCooldown:     opts.FetchCooldown,
		FetchPollInterval: opts.FetchPollInterval,
		// River's client-wide JobTimeout (default 1 min) must not exceed
		// RescueStuckJobsAfter, so without this a RESCUE_AFTER under a
		// minute (crash recovery in seconds) refused to start. Each kind
		// still sets its own Timeout.
		JobTimeout:                  max(deps.Settings.ProvisionTimeout, deps.Settings.TerminateTimeout),
		RescueStuckJobsAfter:        opts.RescueAfter,
		DiscardedJobRetentionPeriod: opts.DiscardedRetention,
		Logger:                      opts.Logger,
		Middleware:                  tracing(), // OpenTelemetry spans (jobs/tracing.go)
	}
	if opts.Sweep != nil {
		if err := addSweep(cfg, workers, deps, *opts.Sweep); err != nil {
			return nil, err
		}
	}
	if opts.RescueAfter <= max(deps.Settings.ProvisionTimeout, deps.Settings.TerminateTimeout) {
		return nil, fmt.Errorf("rescue-after %s must exceed the job timeouts", opts.RescueAfter)
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return c, nil
}

// quietLogger drops River's info chatter; warnings and errors still show.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}
