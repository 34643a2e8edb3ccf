// Package provisioner is the worker as a library: a host process builds
// it from a Config, starts it beside its own HTTP server, mounts its
// handlers (River UI behind basic auth, /metrics, /healthz, /readyz) on
// its own mux if it wants them, and stops it on shutdown. cmd/worker is a
// thin shell over this package, so both forms keep the same guarantees.
package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/handoff"
	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/internal/migrate"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
	"github.com/molecule-ai/provision-worker/internal/workerloop"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Log events of the worker's life, the same in both forms.
const (
	EvStarted       = "worker.started"
	EvStopping      = "worker.stopping"
	EvStopped       = "worker.stopped"
	EvCancelRunning = "worker.cancel_running"
	EvNoAuth        = "riverui.no_auth"
)

// ErrStopped is returned by Start after Stop: a Worker runs once (its
// pool is closed); build a new one to run again.
var ErrStopped = errors.New("provisioner: worker stopped")

// ErrStarted is returned by a second Start.
var ErrStarted = errors.New("provisioner: worker already started")

// Worker is a running (or ready to run) provisioning worker.
type Worker struct {
	cfg     Config
	log     zerolog.Logger
	pool    *pgxpool.Pool
	client  *jobs.Client
	srv     *httpapi.Server
	metrics *obs.Metrics
	dbStats *obs.DBCollector

	started atomic.Bool // /readyz: River is working
	mu      sync.Mutex  // guards state and cancel
	state   int         // stateNew, stateRunning, stateStopped
	cancel  context.CancelFunc
	loops   sync.WaitGroup // background loops; Stop waits for them before closing the pool
	once    sync.Once
	stopErr error
}

// cancelWindow is Stop's wait after cancelling running jobs.
const cancelWindow = handoff.CancelWindow

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New connects and checks everything it can before any job runs: the
// settings, River's schema, the clock skew against Postgres and the CP
// client's configuration. Nothing is worked until Start. On error nothing
// is left open.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Sized from the worker counts unless DATABASE_URL says otherwise
	// (workerenv.PoolConfig): pgx's default of max(4, CPUs) starves the
	// workers and River's fetches on a small host.
	poolCfg, err := workerenv.PoolConfig(cfg.DatabaseURL, cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("provisioner: database: %w", err)
	}
	w, err := build(ctx, cfg, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return w, nil
}

// build wires everything on an open pool.
func build(ctx context.Context, cfg Config, pool *pgxpool.Pool) (*Worker, error) {
	if err := migrate.ValidateRiver(ctx, pool, cfg.Settings.Schema); err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	skew, err := jobs.CheckClockSkew(ctx, pool, cfg.Options, cfg.Settings, time.Now)
	if err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, pool: pool, metrics: obs.NewMetrics()}
	workerloop.ZeroSeries(w.metrics)
	w.metrics.ClockSkew.Set(skew.Seconds())
	w.dbStats = obs.NewDBCollector(store.MustFor(cfg.Settings.Schema), pool, riverjob.Kinds()...).
		WithQueues(riverjob.Queues()...)
	w.metrics.Registry.MustRegister(w.dbStats)
	cpCfg := cfg.CP.internal()
	cpCfg.OnRequest = w.metrics.ObserveCP
	api, err := cp.New(cpCfg)
	if err != nil {
		return nil, fmt.Errorf("provisioner: cp client: %w", err)
	}
	riverLog := slog.New(zerolog.NewSlogHandler(w.log.Level(max(w.log.GetLevel(), zerolog.WarnLevel))))
	opts := cfg.Options
	opts.Logger = riverLog
	if cfg.SweepEnabled {
		sw := cfg.Sweep
		opts.Sweep = &sw
	}
	prune := cfg.Prune
	opts.Prune = &prune
	deps := &worker.Deps{CP: api, Log: w.log, Metrics: w.metrics, Settings: cfg.Settings,
		Env: cfg.Env, OnOutcome: cfg.OnOutcome}
	if w.client, err = worker.NewWorkerClient(pool, deps, opts); err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	w.srv, err = httpapi.New(httpapi.Config{Pool: pool, River: w.client, Registry: w.metrics.Registry,
		User: cfg.UIUser, Pass: cfg.UIPass, Logger: riverLog})
	if err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	w.srv.SetStarted(w.started.Load)
	return w, nil
}

// Start starts working jobs (the periodic timeline pruner among them,
// and, when enabled, the periodic sweep), and the loops beside them:
// database gauges, clock-skew watch, job outcome counters and River UI's
// services. ctx bounds the start only: the worker runs until Stop, so a
// host's request context or a signal context cancelled at SIGTERM does
// not cut running jobs off before Stop's graceful phase. After an error, call Stop to release what
// it started.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.state {
	case stateRunning:
		return ErrStarted
	case stateStopped:
		return ErrStopped
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := w.srv.Start(bg); err != nil {
		cancel()
		return fmt.Errorf("provisioner: river ui: %w", err)
	}
	w.cancel = cancel
	w.state = stateRunning
	w.runLoops(bg)
	if err := w.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("provisioner: start river: %w", err)
	}
	w.started.Store(true)
	w.logStart()
	return nil
}

// runLoops starts the background loops under bg; Stop cancels bg and
// waits for them, so none outlives the pool.
func (w *Worker) runLoops(bg context.Context) {
	done := workerloop.WatchJobs(bg, w.client, w.log, w.metrics)
	w.loops.Add(3)
	go func() { defer w.loops.Done(); <-done }()
	go func() {
		defer w.loops.Done()
		w.dbStats.Run(bg, workerloop.DBStatsInterval, func(err error) {
			w.log.Warn().Str("evt", "metrics.db_read_failed").Err(err).Msg("read database gauges")
		})
	}()
	go func() {
		defer w.loops.Done()
		workerloop.WatchClock(bg, w.pool, w.cfg.Options, w.cfg.Settings, w.log, w.metrics)
	}()
}

func (w *Worker) logStart() {
	w.log.Info().Str("evt", EvStarted).
		Int("provision_workers", w.cfg.Options.ProvisionWorkers).Int("terminate_workers", w.cfg.Options.TerminateWorkers).
		Bool("sweep", w.cfg.SweepEnabled).Str("cp_url", w.cfg.CP.BaseURL).Str("schema", w.cfg.Settings.Schema).
		Msg("worker started")
	if w.cfg.UIUser == "" {
		w.log.Warn().Str("evt", EvNoAuth).
			Msg("River UI is served without credentials (loopback only); set RIVER_BASIC_AUTH_USER/PASS")
	}
}

// Stop stops fetching, lets running jobs finish for ShutdownTimeout (or
// until ctx ends, if sooner), then cancels the rest: their CP calls
// return context.Canceled, so River puts them back as available without
// spending an attempt. Then it stops the background loops and closes the
// pool. It is idempotent: later calls return the first call's result.
// The host should stop serving Handler() after Stop returns (/readyz
// already answers 503 from its start).
func (w *Worker) Stop(ctx context.Context) error {
	w.once.Do(func() { w.stopErr = w.stop(ctx) })
	return w.stopErr
}

func (w *Worker) stop(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	running := w.state == stateRunning
	w.state = stateStopped
	defer w.pool.Close()
	if !running {
		return nil
	}
	w.started.Store(false)
	w.log.Info().Str("evt", EvStopping).Dur("shutdown_timeout", w.cfg.ShutdownTimeout).Msg("stopping: finishing running jobs")
	err := w.stopRiver(ctx)
	w.cancel()
	w.loops.Wait()
	w.log.Info().Str("evt", EvStopped).Msg("stopped")
	return err
}

// stopRiver stops fetching and waits for running jobs; past the timeout it
// cancels them, and their CP calls return context.Canceled so River puts
// them back as available without spending an attempt.
func (w *Worker) stopRiver(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, w.cfg.ShutdownTimeout)
	defer cancel()
	err := w.client.Stop(sctx)
	if err == nil {
		return nil
	}
	w.log.Warn().Str("evt", EvCancelRunning).Err(err).Msg("running jobs did not finish in time: cancelling them")
	// Detached from ctx: it may be the one that just ended, and the cancel
	// must still reach the running jobs.
	// handoff.CancelWindow: long enough for a cancelled job's record, its
	// note and its hand-off, which run on their own contexts, before the
	// pool closes.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cancelWindow)
	defer ccancel()
	if err := w.client.StopAndCancel(cctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("provisioner: stop and cancel: %w", err)
	}
	return nil
}

// Handler serves River UI under /riverui/ (behind basic auth when
// UIUser/UIPass are set; without them it answers only requests whose Host
// is a loopback address), /metrics, /healthz and /readyz, for the host to
// mount on its own mux. Mounted under a prefix, strip it first:
//
//	mux.Handle("/provisioner/", http.StripPrefix("/provisioner", w.Handler()))
//
// River UI's own links assume it lives at /riverui/ of the host; mount
// the handler at "/" (or proxy that path) to browse it.
func (w *Worker) Handler() http.Handler { return w.srv }
