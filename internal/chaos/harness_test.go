package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

const orgID = "org-chaos"

// binDir holds the worker, enqueue and embedhost binaries, built once per
// test run.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	return m.Run()
}

var (
	buildOnce sync.Once
	buildErr  error
)

// binaries builds cmd/worker, cmd/enqueue and the embedding host once;
// tests share them.
func binaries(t *testing.T) (worker, enqueue, host string) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator),
			"github.com/molecule-ai/provision-worker/cmd/worker",
			"github.com/molecule-ai/provision-worker/cmd/enqueue",
			"github.com/molecule-ai/provision-worker/internal/chaos/cmd/embedhost")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return filepath.Join(binDir, "worker"), filepath.Join(binDir, "enqueue"), filepath.Join(binDir, "embedhost")
}

// form is how a worker process runs: cmd/worker, or a host process
// embedding package provisioner (internal/chaos/cmd/embedhost).
type form int

const (
	formCommand form = iota
	formEmbedded
)

func (f form) String() string {
	if f == formEmbedded {
		return "embedded"
	}
	return "command"
}

// world is one test's database, fake CP and binaries.
type world struct {
	t       *testing.T
	dbURL   string
	pool    *pgxpool.Pool
	cp      *cpfake.Server
	worker  string
	enqueue string
	host    string            // the embedding host binary
	env     map[string]string // worker env on top of the defaults
	logDir  string
	mu      sync.Mutex
	procs   []*workerProc
}

func newWorld(t *testing.T, fake cpfake.Options, env map[string]string) *world {
	t.Helper()
	// The log dir is made before stopAll is registered, so cleanup prints
	// the logs before the dir is removed.
	w := &world{t: t, env: env, logDir: t.TempDir()}
	w.worker, w.enqueue, w.host = binaries(t)
	w.pool, w.dbURL = testdb.NewPool(t)
	fake.OrgID = orgID
	w.cp = cpfake.Start(fake)
	t.Cleanup(w.cp.Close)
	t.Cleanup(w.stopAll)
	return w
}

// workerEnv is the environment of a worker process: short timeouts so a
// killed worker's jobs are rescued in seconds, not minutes.
func (w *world) workerEnv(name string) []string {
	env := map[string]string{
		"DATABASE_URL":          w.dbURL,
		"MOLECULE_ORG_ID":       orgID,
		"CP_PROVISION_URL":      w.cp.URL,
		"WORKER_HTTP_ADDR":      "127.0.0.1:0",
		"CP_TIMEOUT":            "1s",
		"PROVISION_TIMEOUT":     "3s",
		"TERMINATE_TIMEOUT":     "3s",
		"RESCUE_AFTER":          "4s",
		"BACKOFF_BASE":          "10ms",
		"TERMINATE_BACKOFF_CAP": "200ms",
		"PROVISION_BACKOFF_CAP": "200ms",
		"SNOOZE_CAP":            "200ms",
		"FETCH_POLL_INTERVAL":   "50ms",
		"SHUTDOWN_TIMEOUT":      "2s",
		"SWEEP_ENABLED":         "false",
		"LOG_LEVEL":             "info",
	}
	for k, v := range w.env {
		env[k] = v
	}
	if u, ok := env["DATABASE_URL"]; ok && !strings.Contains(u, "application_name") {
		env["DATABASE_URL"] = u + "&application_name=" + name
	}
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// workerProc is one worker process, restartable under the same name and
// log file.
type workerProc struct {
	name string
	form form
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startWorker starts a worker process named name (its Postgres
// application_name too, so a test can find its connections).
func (w *world) startWorker(name string) *workerProc {
	w.t.Helper()
	return w.startForm(name, formCommand)
}

// startForm starts a worker process of the given form.
func (w *world) startForm(name string, f form) *workerProc {
	w.t.Helper()
	p := &workerProc{name: name, form: f, log: filepath.Join(w.logDir, name+".log")}
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	w.launch(p)
	return p
}

func (w *world) launch(p *workerProc) {
	w.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(w.t, err)
	bin := w.worker
	if p.form == formEmbedded {
		bin = w.host
	}
	cmd := exec.Command(bin)
	cmd.Env = w.workerEnv(p.name)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(w.t, cmd.Start())
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		p.err = cmd.Wait()
		_ = f.Close()
		close(done)
	}(p.done)
}

// kill SIGKILLs the process and waits for it: a crash, no cleanup at all.
func (p *workerProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// running reports whether the process is still alive.
func (p *workerProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// terminate sends SIGTERM and waits up to limit for the exit.
func (p *workerProc) terminate(limit time.Duration) (exitCode int, err error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		p.kill()
		return -1, fmt.Errorf("%s did not exit within %s of SIGTERM", p.name, limit)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, p.err
}

func (w *world) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.procs {
		if p.running() {
			p.kill()
		}
	}
	if w.t.Failed() {
		for _, p := range w.procs {
			w.t.Logf("---- last lines of %s ----\n%s", p.name, tail(p.log, 40))
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logHas reports whether a worker's log holds a line with every part.
func logHas(p *workerProc, parts ...string) bool {
	b, _ := os.ReadFile(p.log)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(sc.Text(), part)
		}
		if ok {
			return true
		}
	}
	return false
}

// enqueueResult is the JSON enqueue prints.
type enqueueResult struct {
	Action      string `json:"action"`
	WorkspaceID string `json:"workspace_id"`
	Status      string `json:"status"`
	JobID       int64  `json:"job_id"`
}

// runEnqueue runs the enqueue binary and returns its result, exit code and
// stderr.
func (w *world) runEnqueue(ctx context.Context, dbURL string, args ...string) (enqueueResult, int, string) {
	cmd := exec.CommandContext(ctx, w.enqueue, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return enqueueResult{}, -1, err.Error()
	}
	var res enqueueResult
	if code == 0 {
		if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
			return res, -1, "bad JSON from enqueue: " + jerr.Error()
		}
	}
	return res, code, errb.String()
}

// enqueueAll runs `enqueue <verb> --workspace-id id` for every id, par at
// a time, and fails the test on any error.
func (w *world) enqueueAll(verb string, ids []string, par int) []enqueueResult {
	w.t.Helper()
	out := make([]enqueueResult, len(ids))
	errs := make([]string, len(ids))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, code, stderr := w.runEnqueue(ctx, w.dbURL, verb, "--workspace-id", id)
			if code != 0 {
				errs[i] = fmt.Sprintf("enqueue %s %s: exit %d: %s", verb, id, code, stderr)
			}
			out[i] = res
		}()
	}
	wg.Wait()
	for _, e := range errs {
		require.Empty(w.t, e)
	}
	return out
}

// queueCounts reads River's jobs by state and the workspace rows not yet
// stopped (or still holding an instance).
type queueCounts struct {
	live, discarded, unstopped int
}

func (w *world) counts(ctx context.Context) (queueCounts, error) {
	var c queueCounts
	err := w.pool.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM river_job WHERE state IN ('available','running','retryable','scheduled','pending')),
			(SELECT count(*) FROM river_job WHERE state = 'discarded'),
			(SELECT count(*) FROM workspaces WHERE status <> 'stopped' OR instance_id IS NOT NULL)`).
		Scan(&c.live, &c.discarded, &c.unstopped)
	return c, err
}

// drain waits until no job can still run and every row is stopped.
// Killed workers' jobs stay running until River's rescuer (every 30 s on
// the leader) finds them past RESCUE_AFTER, so limit must cover that.
func (w *world) drain(limit time.Duration) (queueCounts, error) {
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	for {
		c, err := w.counts(ctx)
		if err == nil && c.live == 0 && c.unstopped == 0 {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("queue did not drain within %s: %+v (last error %v)", limit, c, err)
		}
		time.Sleep(250 * time.Millisecond) // polling another process's progress: no signal to wait on
	}
}

// drainWhere waits until query (a count) answers 0.
func (w *world) drainWhere(query string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		var n int
		err := w.pool.QueryRow(context.Background(), query).Scan(&n)
		if err == nil && n == 0 {
			return 0, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%q still %d after %s (last error %v)", query, n, limit, err)
		}
		time.Sleep(100 * time.Millisecond) // another process's progress: no signal to wait on
	}
}
