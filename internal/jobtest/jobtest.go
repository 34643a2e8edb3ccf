// Package jobtest starts the real thing for tests: a migrated Postgres
// database of the test's own, a fake CP on loopback, the real CP client
// and a real River client working every kind.
package jobtest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Test credentials: tests assert they never reach a log line or an error.
const (
	OrgID        = "org-test"
	SharedSecret = "shared-SECRET-7f3a"
	AdminToken   = "admin-TOKEN-91bc"
	AdminAPIKey  = "adminapi-KEY-55de"
)

// Config adjusts an Env; zero values give fast test settings.
type Config struct {
	Fake      cpfake.Options
	Settings  jobs.Settings
	Options   jobs.Options
	CPTimeout time.Duration
	NoStart   bool // build the worker client but do not start it
	// DBURL, when set, is an already migrated database to use as is (a
	// host's database, say) instead of a fresh one; its URL is not
	// changed, so the worker runs on the session's own search_path.
	DBURL string
	// Env and OnOutcome are the host's hooks (worker.Deps.Env, OnOutcome).
	Env       jobs.EnvFunc
	OnOutcome jobs.OutcomeFunc
	// CP, when set, is the CP the workers call, built from the Env (its
	// API, fake and metrics are ready): a wrapper that loses an answer or
	// misbehaves. Without a Timeout of its own it keeps API's per-call
	// bound. nil: API. (Tests used to swap Deps.CP after New; the worker
	// client no longer shares the caller's Deps.)
	CP func(e *Env) cp.API
	// Tracer, when set, sees every statement the Env's pool sends (the
	// worker's and the insert client's): tests that count round trips.
	Tracer pgx.QueryTracer
}

// timedAPI gives a CP wrapper the per-call bound of the client it wraps,
// which the worker reads for the env hook's budget.
type timedAPI struct {
	cp.API
	timeout time.Duration
}

func (a timedAPI) Timeout() time.Duration { return a.timeout }

// workersCP is the CP cfg gives the workers.
func (e *Env) workersCP(cfg Config) cp.API {
	if cfg.CP == nil {
		return e.API
	}
	api := cfg.CP(e)
	if _, ok := api.(interface{ Timeout() time.Duration }); !ok {
		api = timedAPI{API: api, timeout: e.API.Timeout()}
	}
	return api
}

// Env is one test's world.
type Env struct {
	T       testing.TB
	Pool    *pgxpool.Pool
	DBURL   string
	CP      *cpfake.Server
	API     *cp.Client
	Insert  *jobs.Client
	Worker  *jobs.Client
	Deps    *worker.Deps // the prepared Deps the workers share (worker.PrepareDeps)
	Metrics *obs.Metrics
	Logs    *SafeBuffer
}

// FastSettings are retry settings that make tests take milliseconds.
func FastSettings() jobs.Settings {
	return jobs.Settings{
		BackoffBase: 5 * time.Millisecond, TerminateBackoffCap: 100 * time.Millisecond,
		ProvisionBackoffCap: 100 * time.Millisecond, ProvisionWait: 20 * time.Millisecond,
		AuthSnooze: 50 * time.Millisecond, SnoozeCap: 200 * time.Millisecond,
		ProvisionTimeout: 10 * time.Second, TerminateTimeout: 10 * time.Second,
		ListUnsupportedAnswers: 3, ListUnsupportedSpan: time.Millisecond,
	}
}

// New builds an Env and starts its worker unless cfg.NoStart.
func New(t testing.TB, cfg Config) *Env {
	t.Helper()
	pool, url := envPool(t, cfg.DBURL, cfg.Tracer)
	e := &Env{T: t, Pool: pool, DBURL: url, Logs: &SafeBuffer{}, Metrics: obs.NewMetrics()}
	e.startCP(cfg)
	settings := cfg.Settings.Or(FastSettings())
	log := zerolog.New(e.Logs).With().Timestamp().Logger()
	var err error
	e.Deps, err = worker.PrepareDeps(pool, worker.Deps{CP: e.workersCP(cfg), Log: log, Metrics: e.Metrics,
		Settings: settings, Env: cfg.Env, OnOutcome: cfg.OnOutcome})
	if err != nil {
		t.Fatalf("jobtest: worker deps: %v", err)
	}
	opts := cfg.Options
	opts.FetchCooldown = firstDur(opts.FetchCooldown, 5*time.Millisecond)
	opts.FetchPollInterval = firstDur(opts.FetchPollInterval, 20*time.Millisecond)
	if e.Worker, err = worker.NewWorkerClient(pool, e.Deps, opts); err != nil {
		t.Fatalf("jobtest: worker client: %v", err)
	}
	if e.Insert, err = jobs.NewInsertClient(pool, settings); err != nil {
		t.Fatalf("jobtest: insert client: %v", err)
	}
	if !cfg.NoStart {
		e.Start()
	}
	return e
}

func (e *Env) startCP(cfg Config) {
	fo := cfg.Fake
	fo.OrgID = OrgID
	if fo.SharedSecret == "" {
		fo.SharedSecret, fo.AdminToken, fo.AdminAPIKey = SharedSecret, AdminToken, AdminAPIKey
	}
	e.CP = cpfake.Start(fo)
	e.T.Cleanup(e.CP.Close)
	api, err := cp.New(cp.Config{
		BaseURL: e.CP.URL, OrgID: OrgID, SharedSecret: fo.SharedSecret, AdminToken: fo.AdminToken,
		AdminAPIKey: fo.AdminAPIKey, Timeout: firstDur(cfg.CPTimeout, 2*time.Second),
		OnRequest: e.Metrics.ObserveCP,
	})
	if err != nil {
		e.T.Fatalf("jobtest: cp client: %v", err)
	}
	e.API = api
}

// Start starts the worker client and stops it when the test ends.
func (e *Env) Start() {
	ctx := context.Background()
	if err := e.Worker.Start(ctx); err != nil {
		e.T.Fatalf("jobtest: start worker: %v", err)
	}
	e.T.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Worker.StopAndCancel(ctx)
	})
}

// Tx runs fn in a transaction that commits when fn returns nil.
func (e *Env) Tx(fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(context.Background(), e.Pool, fn)
}

// Provision requests a provision in its own transaction.
func (e *Env) Provision(req jobs.ProvisionRequest) jobs.Result {
	e.T.Helper()
	var res jobs.Result
	err := e.Tx(func(tx pgx.Tx) (err error) {
		res, err = jobs.RequestProvision(context.Background(), tx, e.Insert, req)
		return err
	})
	if err != nil {
		e.T.Fatalf("jobtest: provision %s: %v", req.WorkspaceID, err)
	}
	return res
}

// ProvisionRunning requests req's provision in its own transaction and
// waits until the row is running, returning the row (its InstanceID
// set): the opening of every test about what happens to a workspace
// that is up, kept in one place so they all wait the same way.
func (e *Env) ProvisionRunning(req jobs.ProvisionRequest) store.Workspace {
	e.T.Helper()
	e.Provision(req)
	return e.WaitStatus(req.WorkspaceID, store.StatusRunning)
}

// Terminate requests a stop in its own transaction.
func (e *Env) Terminate(id string) jobs.Result {
	e.T.Helper()
	var res jobs.Result
	err := e.Tx(func(tx pgx.Tx) (err error) {
		res, err = jobs.RequestTerminate(context.Background(), tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id})
		return err
	})
	if err != nil {
		e.T.Fatalf("jobtest: terminate %s: %v", id, err)
	}
	return res
}

// Workspace reads a row.
func (e *Env) Workspace(id string) store.Workspace {
	e.T.Helper()
	ws, err := store.MustFor(e.Deps.Settings.Schema).Get(context.Background(), e.Pool, id)
	if err != nil {
		e.T.Fatalf("jobtest: read workspace %s: %v", id, err)
	}
	return ws
}

// WaitStatus waits until the row has status (see WaitFor).
func (e *Env) WaitStatus(id, status string) store.Workspace {
	e.T.Helper()
	var ws store.Workspace
	e.WaitFor("workspace "+id+" "+status, func() bool {
		ws = e.Workspace(id)
		return ws.Status == status
	})
	return ws
}

// WaitFor re-checks cond whenever the worker finishes a job (River's
// event subscription), and on a short tick for changes made elsewhere,
// failing the test after 30 s.
func (e *Env) WaitFor(what string, cond func() bool) {
	e.T.Helper()
	events, cancel := e.Worker.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed,
		river.EventKindJobSnoozed, river.EventKindJobCancelled)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-events:
		case <-tick.C:
		case <-deadline:
			e.T.Fatalf("jobtest: timed out waiting for %s", what)
		}
	}
}

// SafeBuffer is a goroutine-safe log sink.
type SafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func firstDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func envPool(t testing.TB, url string, tracer pgx.QueryTracer) (*pgxpool.Pool, string) {
	if url == "" && tracer == nil {
		return testdb.NewPool(t)
	}
	if url == "" {
		url = testdb.WithSearchPath(testdb.New(t))
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("jobtest: pool config: %v", err)
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("jobtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, url
}
