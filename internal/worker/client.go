package worker

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/budget"
	"github.com/molecule-ai/provision-worker/internal/hookmeta"
	"github.com/molecule-ai/provision-worker/internal/jobtrace"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// PrepareDeps returns a copy of deps as the workers use it: Settings with
// their defaults, Pool set to pool, the CP behind the process's list
// guard, its per-call bound read. deps itself is not changed: a caller's
// Deps used to come back rewritten (its CP wrapped, its Settings filled)
// by NewWorkerClient. Preparing a prepared Deps changes nothing, so a
// test can hold the Deps its workers share (jobtest.Env.Deps).
func PrepareDeps(pool *pgxpool.Pool, deps Deps) (*Deps, error) {
	deps.Settings = deps.Settings.Or(jobs.DefaultSettings())
	deps.Pool = pool
	if deps.cpTimeout <= 0 {
		deps.cpTimeout = cpTimeoutOf(deps.CP) // before the guard, which hides it
	}
	deps.CP = newListGuard(deps.CP, deps.Settings, deps.Log)
	if _, err := store.For(deps.Settings.Schema); err != nil {
		return nil, err
	}
	return &deps, nil
}

// NewWorkerClient builds the River client that works every kind, with
// terminates on their own queue (invariant "stops never wait",
// docs/design.md). Its workers share a prepared copy of deps
// (PrepareDeps); the caller's value is left as it is.
func NewWorkerClient(pool *pgxpool.Pool, deps *Deps, opts jobs.Options) (*jobs.Client, error) {
	deps, err := PrepareDeps(pool, *deps)
	if err != nil {
		return nil, err
	}
	opts = opts.WithDefaults(deps.Settings)
	workers := river.NewWorkers()
	river.AddWorker(workers, &ProvisionWorker{policy[jobs.ProvisionArgs]{deps: deps}})
	river.AddWorker(workers, &TerminateWorker{policy[jobs.TerminateArgs]{deps: deps, stop: true}})
	river.AddWorker(workers, &InstanceTerminateWorker{policy[jobs.InstanceTerminateArgs]{deps: deps, stop: true}})
	queues := map[string]river.QueueConfig{
		jobs.QueueProvision: {MaxWorkers: opts.ProvisionWorkers},
		jobs.QueueTerminate: {MaxWorkers: opts.TerminateWorkers},
	}
	cfg := &river.Config{
		ID:      opts.ID,
		Schema:  deps.Settings.Schema,
		Queues:  queues,
		Workers: workers,
		// Its own inserts carry the hooks it has (workerHooks); the guard
		// leaves jobs needing a hook it lacks to a worker that has it.
		Hooks: []rivertype.Hook{&budget.Hook{For: deps.Settings.MaxAttempts},
			&hookmeta.InsertHook{For: workerHooks(deps).NeedsHooks}, &hookGuard{deps: deps}},
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
		// OpenTelemetry spans (internal/jobtrace), and with
		// COMPLETION_SYNCHRONOUS_COMMIT=off the retry that covers a lost
		// completion (asyncCompletion).
		Middleware: middleware(deps, jobtrace.Middleware()),
	}
	if opts.Sweep != nil {
		if err := addSweep(cfg, workers, deps, *opts.Sweep); err != nil {
			return nil, err
		}
	}
	if opts.Prune != nil {
		if err := addPrune(cfg, workers, deps, *opts.Prune); err != nil {
			return nil, err
		}
	}
	if err := jobs.CheckRescueAfter(opts.RescueAfter, deps.Settings); err != nil {
		return nil, err
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return c, nil
}
