package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/internal/migrate"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// DBStatsInterval is how often each replica reads the database gauges
// (jobs by state, oldest available, workspaces by status): fresh enough
// for a 1-minute alert, cheap enough for every replica to do.
const DBStatsInterval = 15 * time.Second

// RunWorker runs the worker until ctx ends (SIGTERM/SIGINT), then shuts
// down gracefully: stop fetching, let running jobs finish for
// ShutdownTimeout, then cancel the rest, which River requeues without
// spending an attempt because CP errors wrap context.Canceled.
func RunWorker(ctx context.Context, c WorkerConfig, log zerolog.Logger) error {
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := migrate.ValidateRiver(ctx, pool, c.Settings.Schema); err != nil {
		return err
	}
	skew, err := jobs.CheckClockSkew(ctx, pool, c.Options, c.Settings, time.Now)
	if err != nil {
		return err
	}
	metrics := obs.NewMetrics()
	zeroSeries(metrics)
	metrics.ClockSkew.Set(skew.Seconds())
	c.CP.OnRequest = metrics.ObserveCP
	dbStats := obs.NewDBCollector(store.MustFor(c.Settings.Schema), pool, jobs.KindProvision, jobs.KindTerminate, jobs.KindInstanceTerminate, jobs.KindOrphanSweep).
		WithQueues(jobs.QueueProvision, jobs.QueueTerminate, jobs.QueueMaintenance)
	metrics.Registry.MustRegister(dbStats)
	statsCtx, stopStats := context.WithCancel(ctx)
	defer stopStats()
	go dbStats.Run(statsCtx, DBStatsInterval, func(err error) {
		log.Warn().Str("evt", "metrics.db_read_failed").Err(err).Msg("read database gauges")
	})
	go watchClock(statsCtx, pool, c, log, metrics)
	api, err := cp.New(c.CP)
	if err != nil {
		return fmt.Errorf("cp client: %w", err)
	}
	riverLog := slog.New(zerolog.NewSlogHandler(log.Level(max(log.GetLevel(), zerolog.WarnLevel))))
	c.Options.Logger = riverLog
	if c.SweepEnabled {
		c.Options.Sweep = &c.Sweep
	}
	deps := &jobs.Deps{CP: api, Log: log, Metrics: metrics, Settings: c.Settings}
	client, err := jobs.NewWorkerClient(pool, deps, c.Options)
	if err != nil {
		return err
	}
	srv, err := httpapi.New(httpapi.Config{Pool: pool, River: client, Registry: metrics.Registry,
		User: c.UIUser, Pass: c.UIPass, Logger: riverLog})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.HTTPAddr, err)
	}
	return serve(ctx, c, log, client, srv, ln, metrics, pool)
}

func serve(ctx context.Context, c WorkerConfig, log zerolog.Logger, client *jobs.Client, srv *httpapi.Server,
	ln net.Listener, metrics *obs.Metrics, pool *pgxpool.Pool) error {
	var started atomic.Bool
	srv.SetStarted(started.Load)
	uiCtx, stopUI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUI()
	if err := srv.Start(uiCtx); err != nil {
		return fmt.Errorf("river ui: %w", err)
	}
	httpSrv := httpapi.NewHTTPServer(srv, httpapi.DefaultTimeouts)
	go func() { _ = httpSrv.Serve(ln) }()
	watchJobs(uiCtx, client, log, metrics)
	go pruneEvents(uiCtx, store.MustFor(c.Settings.Schema), pool, c.EventRetention, log)

	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	started.Store(true)
	logStart(log, c)
	<-ctx.Done()
	started.Store(false)
	log.Info().Str("evt", "worker.stopping").Dur("shutdown_timeout", c.ShutdownTimeout).Msg("stopping: finishing running jobs")
	stopRiver(client, c.ShutdownTimeout, log)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(sctx)
	log.Info().Str("evt", "worker.stopped").Msg("stopped")
	return nil
}

// stopRiver stops fetching and waits for running jobs; past the timeout it
// cancels them, and their CP calls return context.Canceled so River puts
// them back as available without spending an attempt.
func stopRiver(client *jobs.Client, timeout time.Duration, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := client.Stop(ctx)
	if err == nil {
		return
	}
	log.Warn().Str("evt", "worker.cancel_running").Err(err).Msg("running jobs did not finish in time: cancelling them")
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := client.StopAndCancel(cctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("stop and cancel")
	}
}

func logStart(log zerolog.Logger, c WorkerConfig) {
	ev := log.Info().Str("evt", "worker.started").Str("http_addr", c.HTTPAddr).
		Int("provision_workers", c.Options.ProvisionWorkers).Int("terminate_workers", c.Options.TerminateWorkers).
		Bool("sweep", c.SweepEnabled).Str("cp_url", c.CP.BaseURL)
	ev.Msg("worker started")
	if c.UIUser == "" {
		log.Warn().Str("evt", "riverui.no_auth").Str("http_addr", c.HTTPAddr).
			Msg("River UI is served without credentials (loopback only); set RIVER_BASIC_AUTH_USER/PASS")
	}
}

// watchJobs turns River's job events into outcome counters, and logs every
// discarded job at error level: River's rescuer can discard a job without
// the worker ever logging it.
// It subscribes before returning, so no event between this call and the
// client's start is missed.
func watchJobs(ctx context.Context, client *jobs.Client, log zerolog.Logger, m *obs.Metrics) {
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed,
		river.EventKindJobSnoozed, river.EventKindJobCancelled)
	go func() {
		defer cancel()
		countJobs(ctx, events, log, m)
	}()
}

func countJobs(ctx context.Context, events <-chan *river.Event, log zerolog.Logger, m *obs.Metrics) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			outcome := jobOutcome(ev)
			m.JobsTotal.WithLabelValues(ev.Job.Kind, outcome).Inc()
			if outcome == "discarded" {
				ws, inst := jobIDs(ev.Job)
				obs.Event(log, zerolog.ErrorLevel, obs.EvJobDiscarded, obs.Fields{WorkspaceID: ws, InstanceID: inst,
					JobID: ev.Job.ID, Attempt: ev.Job.Attempt, Extra: map[string]any{"kind": ev.Job.Kind,
						"hint": "re-run it from River UI or `enqueue retry --job-id`"}})
			}
		}
	}
}

func jobOutcome(ev *river.Event) string {
	switch ev.Kind {
	case river.EventKindJobCompleted:
		return "completed"
	case river.EventKindJobSnoozed:
		return "snoozed"
	case river.EventKindJobCancelled:
		return "cancelled"
	}
	if ev.Job.State == "discarded" {
		return "discarded"
	}
	return "retried"
}

// watchClock measures the clock skew every DBStatsInterval after the
// start-up check: NTP can stop, and a leader drifting ahead of Postgres
// rescues attempts that are still running.
func watchClock(ctx context.Context, pool *pgxpool.Pool, c WorkerConfig, log zerolog.Logger, m *obs.Metrics) {
	tick := time.NewTicker(DBStatsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		skew, err := jobs.CheckClockSkew(ctx, pool, c.Options, c.Settings, time.Now)
		if err == nil || errors.Is(err, jobs.ErrClockSkew) {
			m.ClockSkew.Set(skew.Seconds())
		}
		if errors.Is(err, jobs.ErrClockSkew) {
			log.Error().Str("evt", evClockSkew).Err(err).Msg("clock skew: River may rescue attempts that are still running")
		}
	}
}

// evClockSkew is logged while the clock skew is beyond the safe limit.
const evClockSkew = "worker.clock_skew"

// pruneEvents applies the timeline's retention once an hour.
func pruneEvents(ctx context.Context, st *store.Store, pool *pgxpool.Pool, retention time.Duration, log zerolog.Logger) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		for {
			n, err := st.PruneEvents(ctx, pool, retention, 10000)
			if err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("prune timeline events")
			}
			if err != nil || n < 10000 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
