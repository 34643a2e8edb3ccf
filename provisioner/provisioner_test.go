package provisioner_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
	"github.com/molecule-ai/provision-worker/provisioner"
)

const orgID = "org-embed"

// host is a host process's side of an embedded worker: its own database
// pool and insert client, the fake CP over HTTP, and the worker's config.
type host struct {
	t      *testing.T
	cfg    provisioner.Config
	pool   *pgxpool.Pool
	insert *jobs.Client
	cp     *cpfake.Server
	logs   *syncBuffer
}

func newHost(t *testing.T) *host {
	t.Helper()
	url := testdb.New(t)
	sim := cpfake.Start(cpfake.Options{OrgID: orgID})
	t.Cleanup(sim.Close)
	pool, err := pgxpool.New(context.Background(), testdb.WithSearchPath(url))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	insert, err := jobs.NewInsertClient(pool, jobs.Settings{})
	require.NoError(t, err)
	logs := &syncBuffer{}
	cfg := provisioner.Config{
		DatabaseURL: url,
		CP:          provisioner.CPConfig{BaseURL: sim.URL, OrgID: orgID, Timeout: 30 * time.Second},
		Settings:    jobs.Settings{BackoffBase: 10 * time.Millisecond, ProvisionTimeout: 40 * time.Second, TerminateTimeout: 40 * time.Second},
		Options:     jobs.Options{FetchPollInterval: 50 * time.Millisecond, RescueAfter: 50 * time.Second},
		UIUser:      "ops", UIPass: "s3cret-ui-pass",
		ShutdownTimeout: 20 * time.Second,
		Logger:          zerolog.New(logs),
	}
	return &host{t: t, cfg: cfg, pool: pool, insert: insert, cp: sim, logs: logs}
}

// start builds and starts the worker; cleanup stops it.
func (h *host) start() *provisioner.Worker {
	h.t.Helper()
	w, err := provisioner.New(context.Background(), h.cfg)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = w.Stop(context.Background()) })
	require.NoError(h.t, w.Start(context.Background()))
	return w
}

// provision is what the host's create handler does: its own transaction,
// the provision request inside it.
func (h *host) provision(id string) jobs.Result {
	h.t.Helper()
	var res jobs.Result
	require.NoError(h.t, pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error {
		var err error
		res, err = jobs.RequestProvision(context.Background(), tx, h.insert, jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
		return err
	}))
	return res
}

func (h *host) status(id string) (status string, instance *string) {
	h.t.Helper()
	require.NoError(h.t, h.pool.QueryRow(context.Background(),
		`SELECT status::text, instance_id FROM workspaces WHERE id = $1`, id).Scan(&status, &instance))
	return status, instance
}

type jobState struct {
	state   string
	attempt int
	errors  int
}

func (h *host) job(id int64) jobState {
	h.t.Helper()
	var j jobState
	require.NoError(h.t, h.pool.QueryRow(context.Background(), `
		SELECT state::text, attempt, coalesce(array_length(errors, 1), 0) FROM river_job WHERE id = $1`, id).
		Scan(&j.state, &j.attempt, &j.errors))
	return j
}

// blockFirstProvision holds the first provision inside the fake CP, after
// it launched the instance and before it answers, until release.
func (h *host) blockFirstProvision() (reached <-chan cp.Instance, release func()) {
	ch := make(chan cp.Instance, 1)
	gate := make(chan struct{})
	var once, rel sync.Once
	h.cp.SetProvisionHook(func(_ string, inst cp.Instance) {
		first := false
		once.Do(func() { first = true })
		if first {
			ch <- inst
			<-gate
		}
	})
	release = func() { rel.Do(func() { close(gate) }) }
	h.t.Cleanup(release)
	return ch, release
}

func waitInstance(t *testing.T, ch <-chan cp.Instance) cp.Instance {
	t.Helper()
	select {
	case inst := <-ch:
		return inst
	case <-time.After(30 * time.Second):
		t.Fatal("no provision reached the CP")
		return cp.Instance{}
	}
}

// syncBuffer is a log sink the worker's goroutines write while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// A host mounts the worker's handler on its own mux, beside its own
// routes, under a prefix or at the root: probes and /metrics answer, River
// UI asks for the credentials and serves with them, and the host's own
// route is untouched.
func TestEmbedded_HandlerOnTheHostsMux(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	w := h.start()
	for _, prefix := range []string{"/provisioner", ""} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			mux.HandleFunc("GET /host/ping", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("pong")) })
			if prefix == "" {
				mux.Handle("/", w.Handler())
			} else {
				mux.Handle(prefix+"/", http.StripPrefix(prefix, w.Handler()))
			}
			srv := httptest.NewServer(mux)
			defer srv.Close()
			base := srv.URL + prefix

			code, body := get(t, srv.URL+"/host/ping", "", "")
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, "pong", body)
			code, body = get(t, base+"/healthz", "", "")
			require.Equal(t, http.StatusOK, code, body)
			code, body = get(t, base+"/readyz", "", "")
			require.Equal(t, http.StatusOK, code, body)
			code, body = get(t, base+"/metrics", "", "")
			require.Equal(t, http.StatusOK, code)
			requireSeries(t, body, `provisioner_jobs_total{kind="`+jobs.KindProvision+`",outcome="completed"} 0`)

			code, _ = get(t, base+"/riverui/", "", "")
			require.Equal(t, http.StatusUnauthorized, code)
			code, _ = get(t, base+"/riverui/", "ops", "wrong")
			require.Equal(t, http.StatusUnauthorized, code)
			code, body = get(t, base+"/riverui/", "ops", "s3cret-ui-pass")
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, strings.ToLower(body), "<html")
			code, body = get(t, base+"/riverui/api/queues", "ops", "s3cret-ui-pass")
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, body, jobs.QueueTerminate)
		})
	}
}

// A provision the host requests in its own transaction is worked by the
// embedded worker through the CP, and counted on the handler's /metrics.
func TestEmbedded_ProvisionRequestedByTheHostCompletes(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	w := h.start()
	id := uuid.NewString()
	res := h.provision(id)

	deadline := time.Now().Add(30 * time.Second)
	for h.job(res.Job.ID).state != "completed" {
		require.True(t, time.Now().Before(deadline), "provision not completed in 30s: %+v", h.job(res.Job.ID))
		time.Sleep(20 * time.Millisecond) // the worker's progress is in the database: no signal to wait on
	}
	status, inst := h.status(id)
	require.Equal(t, "running", status)
	require.NotNil(t, inst)
	live := h.cp.Live(id)
	require.Len(t, live, 1)
	require.Equal(t, live[0].InstanceID, *inst)

	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	// River emits the job's event after its completion commits.
	want := "\n" + `provisioner_jobs_total{kind="` + jobs.KindProvision + `",outcome="completed"} 1` + "\n"
	require.Eventually(t, func() bool {
		_, body := get(t, srv.URL+"/metrics", "", "")
		return strings.Contains(body, want)
	}, 10*time.Second, 20*time.Millisecond, "/metrics lacks %s", want)
	require.Contains(t, h.logs.String(), `"evt":"worker.started"`)
}

// Stop lets a running job finish within ShutdownTimeout: the CP call
// blocked at Stop completes, the job completes on its first attempt, and
// Stop returns only after it. /readyz turns 503 as Stop begins.
func TestStop_LetsRunningJobFinish(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	reached, release := h.blockFirstProvision()
	w := h.start()
	res := h.provision(uuid.NewString())
	waitInstance(t, reached)

	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(context.Background()) }()
	require.Never(t, func() bool { return len(stopped) > 0 }, 500*time.Millisecond, 20*time.Millisecond,
		"Stop returned while a job was running")
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	code, _ := get(t, srv.URL+"/readyz", "", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	release()
	require.NoError(t, <-stopped)

	j := h.job(res.Job.ID)
	require.Equal(t, "completed", j.state)
	require.Equal(t, 1, j.attempt)
	logs := h.logs.String()
	require.Contains(t, logs, `"evt":"worker.stopping"`)
	require.Contains(t, logs, `"evt":"worker.stopped"`)
	require.NotContains(t, logs, `"evt":"worker.cancel_running"`)
}

// Past ShutdownTimeout, Stop cancels the running job: it goes back to
// available without spending an attempt, Stop returns, and a second Stop
// and a Start after it are harmless.
func TestStop_CancelsPastTimeoutAndRequeuesWithoutSpendingAnAttempt(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	h.cfg.ShutdownTimeout = time.Second
	reached, _ := h.blockFirstProvision()
	w := h.start()
	res := h.provision(uuid.NewString())
	waitInstance(t, reached)

	require.NoError(t, w.Stop(context.Background()))
	require.Contains(t, h.logs.String(), `"evt":"worker.cancel_running"`)
	j := h.job(res.Job.ID)
	require.Equal(t, "available", j.state)
	require.Equal(t, 0, j.attempt, "the cancelled attempt was spent")
	require.Equal(t, 0, j.errors)

	require.NoError(t, w.Stop(context.Background()), "second Stop")
	require.Equal(t, 1, strings.Count(h.logs.String(), `"evt":"worker.stopped"`))
	require.ErrorIs(t, w.Start(context.Background()), provisioner.ErrStopped)
}

// Stop's ctx bounds the graceful phase as well: a host with its own
// shutdown deadline shorter than ShutdownTimeout is not made to wait.
func TestStop_ContextShorterThanShutdownTimeoutCancelsSooner(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	h.cfg.ShutdownTimeout = time.Hour
	reached, _ := h.blockFirstProvision()
	w := h.start()
	res := h.provision(uuid.NewString())
	waitInstance(t, reached)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	require.NoError(t, w.Stop(ctx))
	require.Equal(t, "available", h.job(res.Job.ID).state)
	require.Equal(t, 0, h.job(res.Job.ID).attempt)
}

// A Worker built but never started stops cleanly (its pool closed) and
// cannot be started afterwards.
func TestStop_BeforeStart(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	w, err := provisioner.New(context.Background(), h.cfg)
	require.NoError(t, err)
	require.NoError(t, w.Stop(context.Background()))
	require.ErrorIs(t, w.Start(context.Background()), provisioner.ErrStopped)
	require.NotContains(t, h.logs.String(), `"evt":"worker.stopping"`)
}

// Two Starts: the second is refused rather than running River twice.
func TestStart_Twice(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	w := h.start()
	require.ErrorIs(t, w.Start(context.Background()), provisioner.ErrStarted)
}

// requireSeries fails unless the /metrics page has the line (without
// printing the whole page).
func requireSeries(t *testing.T, page, line string) {
	t.Helper()
	require.True(t, strings.Contains(page, "\n"+line+"\n"), "/metrics lacks %s", line)
}

// Embedded without UIUser/UIPass, Handler() is mounted on the host's own
// listener, which may be public: a client that writes Host: 127.0.0.1 (and
// a matching Origin) must not reach River UI, which can pause the
// terminate queue and cancel stops. A loopback peer still is served.
func TestEmbeddedUI_WithoutCredentialsServesNoRemotePeerWhateverItsHost(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	h.cfg.UIUser, h.cfg.UIPass = "", ""
	w := h.start()
	cases := []struct {
		name, remote string
		want         int
	}{
		{"public peer, forged loopback Host", "203.0.113.7:51515", http.StatusForbidden},
		{"private peer, forged loopback Host", "10.1.2.3:4000", http.StatusForbidden},
		{"loopback peer", "127.0.0.1:51515", http.StatusOK},
		{"loopback v6 peer", "[::1]:51515", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/riverui/api/queues", nil)
			req.RemoteAddr = tc.remote
			req.Host = "127.0.0.1"
			req.Header.Set("Origin", "http://127.0.0.1")
			rec := httptest.NewRecorder()
			w.Handler().ServeHTTP(rec, req)
			require.Equal(t, tc.want, rec.Code, rec.Body.String())
		})
	}
}
