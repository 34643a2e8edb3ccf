package main_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"example.com/platform/api"
	"example.com/platform/hostdb"
	"example.com/platform/internal/pgtest"
	"example.com/platform/secrets"
)

// The end-to-end tests run the real processes: the platform binary built
// from this module, the CP simulator (cmd/cpsim) behind a small proxy
// this test owns, and Postgres. They talk to the platform through its
// HTTP API only, and read the CP through its own API.

const org = "platform-test-org"

// secretMark is in every secret value the tests store; no process may
// ever print it.
const secretMark = "s3cr3t-value"

var (
	platformOnce sync.Once
	platformBin  string
	platformErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if platformBin != "" {
		_ = os.RemoveAll(filepath.Dir(platformBin))
	}
	pgtest.Cleanup()
	os.Exit(code)
}

func buildPlatform(t *testing.T) string {
	t.Helper()
	platformOnce.Do(func() {
		dir, err := os.MkdirTemp("", "platform-bin-")
		if err != nil {
			platformErr = err
			return
		}
		platformBin = filepath.Join(dir, "platform")
		out, err := exec.Command("go", "build", "-o", platformBin, ".").CombinedOutput()
		if err != nil {
			platformErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	require.NoError(t, platformErr)
	return platformBin
}

// proc is a child process whose output is kept for the test's checks.
type proc struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
	ready chan string
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is everything the process wrote so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startProc starts cmd and waits for the JSON log line whose msg is
// readyMsg, returning its field (the address it bound): a signal, not a
// sleep.
func startProc(t *testing.T, name string, cmd *exec.Cmd, readyMsg, field string) (*proc, string) {
	t.Helper()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), ready: make(chan string, 1)}
	cmd.Stdout = p
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.Write([]byte(line + "\n"))
			var m map[string]any
			if strings.Contains(line, readyMsg) && json.Unmarshal([]byte(line), &m) == nil && m["msg"] == readyMsg {
				if v, ok := m[field].(string); ok {
					select {
					case p.ready <- v:
					default:
					}
				}
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.Output(), 60))
		}
	})
	select {
	case v := <-p.ready:
		return p, v
	case <-p.done:
		t.Fatalf("%s exited before it was ready:\n%s", name, p.Output())
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s not ready after 2 minutes:\n%s", name, p.Output())
	}
	return nil, ""
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kill SIGKILLs the process and waits for it to be gone.
func (p *proc) Kill(t *testing.T) {
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

// Stop sends SIGTERM and returns the exit code once it has exited.
func (p *proc) Stop(t *testing.T) int {
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not stop within a minute of SIGTERM", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

// cpProxy sits between the platform and cpsim. It records the env each
// provision carried (proof the env hook ran), rejects one runtime the way
// a real CP answers an invalid request (a 422 whose text names AMI and
// VPC ids that must never reach the host), and can hold chosen requests
// to kill the platform while they are in flight.
type cpProxy struct {
	target string
	srv    *httptest.Server
	client *http.Client

	mu       sync.Mutex
	envs     map[string]map[string]string
	hold     func(route, ws string) bool
	arrived  chan string
	release  chan struct{}
	launched map[string]string // held provisions: workspace → the instance the CP launched
	inFlight sync.WaitGroup
}

const (
	rejectRuntime = "reject-me"
	cpLeakText    = "image ami-0123456789abcdef0 not found in vpc-0a1b2c3d4e5f"
	routeProv     = "provision"
	routeTerm     = "terminate"
)

func newCPProxy(t *testing.T, target string) *cpProxy {
	p := &cpProxy{target: target, envs: map[string]map[string]string{}, launched: map[string]string{},
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// Hold makes the requests hold selects wait until Release; each is
// announced on the returned channel as "route workspace".
func (p *cpProxy) Hold(hold func(route, ws string) bool) <-chan string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.arrived, p.release = hold, make(chan string, 100), make(chan struct{})
	return p.arrived
}

// Release lets every held request through to the CP (whoever asked may
// be dead by then: the CP acts, the answer is lost) and waits until the
// CP has answered them all.
func (p *cpProxy) Release() {
	p.mu.Lock()
	p.hold = nil
	close(p.release)
	p.mu.Unlock()
	p.inFlight.Wait()
}

func (p *cpProxy) Env(ws string) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.envs[ws]
}

func (p *cpProxy) Launched(ws string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.launched[ws]
}

func (p *cpProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	route, ws := "", ""
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/cp/workspaces/provision":
		var req struct {
			WorkspaceID string            `json:"workspace_id"`
			Runtime     string            `json:"runtime"`
			Env         map[string]string `json:"env"`
		}
		_ = json.Unmarshal(body, &req)
		route, ws = routeProv, req.WorkspaceID
		p.mu.Lock()
		p.envs[ws] = req.Env
		p.mu.Unlock()
		if req.Runtime == rejectRuntime {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": cpLeakText})
			return
		}
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/cp/workspaces/"):
		route, ws = routeTerm, strings.TrimPrefix(r.URL.Path, "/cp/workspaces/")
	}
	p.mu.Lock()
	held := p.hold != nil && p.hold(route, ws)
	release := p.release
	if held {
		p.inFlight.Add(1)
		p.arrived <- route + " " + ws
	}
	p.mu.Unlock()
	ctx := r.Context()
	if held {
		defer p.inFlight.Done()
		<-release
		ctx = context.Background() // the caller may be dead: the CP acts anyway
	}
	status, hdr, out, err := p.forward(ctx, r, body)
	if err != nil {
		http.Error(w, "proxy", http.StatusBadGateway)
		return
	}
	if held && route == routeProv {
		var res struct {
			InstanceID string `json:"instance_id"`
		}
		_ = json.Unmarshal(out, &res)
		p.mu.Lock()
		p.launched[ws] = res.InstanceID
		p.mu.Unlock()
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func (p *cpProxy) forward(ctx context.Context, r *http.Request, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out, err
}

// harness is one test's world: a database, a CP simulator, the proxy.
type harness struct {
	t     *testing.T
	bins  string
	dbURL string
	db    *sql.DB
	cp    string // cpsim's URL, for the test's own reads and launches
	proxy *cpProxy
	key   string
	procs []*proc
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, bins: pgtest.Bins(t), dbURL: pgtest.NewDB(t), key: secrets.NewKey()}
	buildPlatform(t)
	h.db = pgtest.Open(t, h.dbURL)
	pgtest.MigrateWorker(t, h.dbURL)
	sim := exec.Command(filepath.Join(h.bins, "cpsim"), "--addr", "127.0.0.1:0", "--org-id", org,
		"--latency", "2ms", "--boot-time", "100ms", "--shutdown-time", "100ms", "--seed", "1")
	sim.Env = []string{"PATH=" + os.Getenv("PATH")}
	_, h.cp = startProc(t, "cpsim", sim, "cpsim listening", "url")
	h.proxy = newCPProxy(t, h.cp)
	t.Cleanup(func() {
		for _, p := range h.procs {
			if strings.Contains(p.Output(), secretMark) {
				t.Errorf("%s logged a secret value", p.name)
			}
		}
	})
	return h
}

// env is the platform's environment: fast retries and rescue, so a crash
// converges in seconds rather than the production minutes.
func (h *harness) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + h.dbURL,
		"MOLECULE_ORG_ID=" + org,
		"CP_PROVISION_URL=" + h.proxy.srv.URL,
		"SECRETS_KEY=" + h.key,
		"PLATFORM_ADDR=127.0.0.1:0",
		"CP_TIMEOUT=2s",
		"PROVISION_TIMEOUT=3s",
		"TERMINATE_TIMEOUT=3s",
		"RESCUE_AFTER=6s",
		"BACKOFF_BASE=100ms",
		"PROVISION_BACKOFF_CAP=1s",
		"TERMINATE_BACKOFF_CAP=1s",
		"FETCH_POLL_INTERVAL=100ms",
		"SWEEP_GRACE=7s",
		"SWEEP_INTERVAL=1h",
		"SHUTDOWN_TIMEOUT=5s",
	}
}

// startPlatform runs the platform binary and returns it and its base URL.
func (h *harness) startPlatform() (*proc, string) {
	cmd := exec.Command(buildPlatform(h.t))
	cmd.Env = h.env()
	p, addr := startProc(h.t, "platform", cmd, "platform listening", "addr")
	h.procs = append(h.procs, p)
	return p, "http://" + addr
}

// run runs a platform subcommand or a root command to completion.
func (h *harness) run(bin string, args ...string) string {
	h.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = h.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(h.t, cmd.Run(), "%s %v: %s", filepath.Base(bin), args, stderr.String())
	return stdout.String()
}

func (h *harness) create(base string, req api.CreateRequest) hostdb.Workspace {
	h.t.Helper()
	if req.Name == "" {
		req.Name = "ws"
	}
	if req.Runtime == "" {
		req.Runtime = "python"
	}
	b, err := json.Marshal(req)
	require.NoError(h.t, err)
	resp, err := http.Post(base+"/workspaces", "application/json", bytes.NewReader(b))
	require.NoError(h.t, err)
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	require.Equal(h.t, http.StatusCreated, resp.StatusCode, string(out))
	var ws hostdb.Workspace
	require.NoError(h.t, json.Unmarshal(out, &ws))
	return ws
}

func (h *harness) delete(base, id string) []string {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodDelete, base+"/workspaces/"+id, nil)
	require.NoError(h.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	require.Equal(h.t, http.StatusAccepted, resp.StatusCode, string(out))
	var d api.DeleteResponse
	require.NoError(h.t, json.Unmarshal(out, &d))
	return d.Removed
}

func (h *harness) restart(base, id string) {
	h.t.Helper()
	resp, err := http.Post(base+"/workspaces/"+id+"/restart", "application/json", nil)
	require.NoError(h.t, err)
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	require.Equal(h.t, http.StatusAccepted, resp.StatusCode, string(out))
}

// row reads the host's row straight from its table (the API may be down
// between a kill and a restart).
func (h *harness) row(id string) hostdb.Workspace {
	h.t.Helper()
	ws, err := hostdb.Get(context.Background(), h.db, id)
	require.NoError(h.t, err)
	return ws
}

type cpInstance struct {
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	State       string `json:"state"`
}

// cpInstances is every instance cpsim still holds (not yet terminated),
// read through its list endpoint.
func (h *harness) cpInstances() []cpInstance {
	h.t.Helper()
	var all []cpInstance
	cursor := ""
	for {
		u := fmt.Sprintf("%s/cp/workspaces?org_id=%s&limit=1000&cursor=%s", h.cp, org, url.QueryEscape(cursor))
		resp, err := http.Get(u)
		require.NoError(h.t, err)
		var page struct {
			Instances  []cpInstance `json:"instances"`
			NextCursor string       `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		require.NoError(h.t, err)
		all = append(all, page.Instances...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

// cpLaunch provisions an instance at cpsim directly: the fleet the host
// launched before the worker existed.
func (h *harness) cpLaunch(ws string) string {
	h.t.Helper()
	body := fmt.Sprintf(`{"org_id":%q,"workspace_id":%q,"runtime":"python","tier":1}`, org, ws)
	resp, err := http.Post(h.cp+"/cp/workspaces/provision", "application/json", strings.NewReader(body))
	require.NoError(h.t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(h.t, http.StatusCreated, resp.StatusCode)
	var out struct {
		InstanceID string `json:"instance_id"`
	}
	require.NoError(h.t, json.NewDecoder(resp.Body).Decode(&out))
	return out.InstanceID
}

// eventually polls cond until it holds. Used only where no signal exists:
// the state lives in other processes (the platform, cpsim).
func (h *harness) eventually(what string, limit time.Duration, cond func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("%s: not after %s: %s", what, limit, last)
}
