package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// call is one request to the real handler stack (basic auth, guards,
// River UI itself).
type call struct {
	method, path, body string
	host               string            // "" keeps the server's own
	header             map[string]string // e.g. Origin, Sec-Fetch-Site, Content-Type
	auth               bool
	chunked            bool // no Content-Length: the body streams
}

func (c call) do(t *testing.T, base string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(body) // hides the length from net/http
		}
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	require.NoError(t, err)
	if c.host != "" {
		req.Host = c.host
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if c.auth {
		req.SetBasicAuth(uiUser, uiPass)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// waitingJob inserts a provision job nobody works: the target of the
// writes below.
func waitingJob(t *testing.T, env *jobtest.Env) int64 {
	t.Helper()
	res := env.Provision(jobs.ProvisionRequest{WorkspaceID: uuid.NewString()})
	require.Equal(t, rivertype.JobStateAvailable, res.Job.State)
	return res.Job.ID
}

// knownQueue gives River UI a queue row to pause (a started client
// would make it; these tests work no jobs).
func knownQueue(t *testing.T, env *jobtest.Env, name string) {
	t.Helper()
	_, err := env.Pool.Exec(context.Background(),
		`INSERT INTO river_queue (name, created_at, metadata, updated_at) VALUES ($1, now(), '{}', now())`, name)
	require.NoError(t, err)
}

func queuePaused(t *testing.T, env *jobtest.Env, name string) bool {
	t.Helper()
	var paused bool
	require.NoError(t, env.Pool.QueryRow(context.Background(),
		`SELECT paused_at IS NOT NULL FROM river_queue WHERE name = $1`, name).Scan(&paused))
	return paused
}

// writes are River UI's mutating API calls, aimed at job id and the
// terminate queue.
func writes(id int64) []call {
	ids := fmt.Sprintf(`{"ids":["%d"]}`, id)
	return []call{
		{method: "POST", path: "/riverui/api/jobs/cancel", body: ids},
		{method: "POST", path: "/riverui/api/jobs/delete", body: ids},
		{method: "POST", path: "/riverui/api/jobs/retry", body: ids},
		{method: "PUT", path: "/riverui/api/queues/terminate/pause"},
		{method: "PATCH", path: "/riverui/api/queues/terminate", body: `{"concurrency":{"global_limit":0,"local_limit":0}}`},
	}
}

// Finding 1: the review's cross-site form post (cached basic-auth
// credentials, text/plain, a foreign Origin) cancelled a job. Every such
// write must be refused before River UI acts.
func TestCSRF_RefusesCrossSiteWritesToRiverUI(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	id := waitingJob(t, env)
	knownQueue(t, env, jobs.QueueTerminate)
	self := strings.TrimPrefix(hs.URL, "http://")
	cases := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"review's form post: text/plain from evil.example", map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403},
		{"JSON from evil.example", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, 403},
		{"JSON from another port of this host", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403},
		{"JSON from a sandboxed frame", map[string]string{"Content-Type": "application/json", "Origin": "null"}, 403},
		{"JSON, cross-site by Sec-Fetch-Site", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		{"JSON, same-site but another origin", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site", "Origin": "http://" + self}, 403},
		{"JSON with neither header", map[string]string{"Content-Type": "application/json"}, 403},
		{"same-origin form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://" + self}, 415},
		{"same-origin multipart post", map[string]string{"Content-Type": "multipart/form-data; boundary=x", "Origin": "http://" + self}, 415},
	}
	for _, tc := range cases {
		for _, w := range writes(id) {
			t.Run(tc.name+" "+w.method+" "+w.path, func(t *testing.T) {
				w.header, w.auth = tc.header, true
				if w.body != "" {
					w.body = strings.TrimSuffix(w.body, "}") + `,"x":"="}` // the shape a text/plain form yields
				}
				code, _, body := w.do(t, hs.URL)
				require.Equal(t, tc.want, code, body)
			})
		}
	}
	job, err := env.Insert.JobGet(context.Background(), id)
	require.NoError(t, err, "the job was not deleted")
	require.Equal(t, rivertype.JobStateAvailable, job.State, "the job was not cancelled")
	require.False(t, queuePaused(t, env, jobs.QueueTerminate), "the terminate queue was not paused")
}

// River UI's own frontend must keep working: its fetch calls send JSON
// labelled text/plain (no Content-Type set), pause has no body, and the
// browser proves same-origin with Origin or Sec-Fetch-Site.
func TestCSRF_AllowsSameOriginWritesAsRiverUISendsThem(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	knownQueue(t, env, jobs.QueueTerminate)
	self := "http://" + strings.TrimPrefix(hs.URL, "http://")

	a := waitingJob(t, env)
	code, _, body := call{method: "POST", path: "/riverui/api/jobs/cancel", body: fmt.Sprintf(`{"ids":["%d"]}`, a), auth: true,
		header: map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": self}}.do(t, hs.URL)
	require.Equal(t, http.StatusOK, code, body)
	job, err := env.Insert.JobGet(context.Background(), a)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCancelled, job.State)

	b := waitingJob(t, env)
	code, _, body = call{method: "POST", path: "/riverui/api/jobs/delete", body: fmt.Sprintf(`{"ids":["%d"]}`, b), auth: true,
		header: map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Sec-Fetch-Site": "same-origin"}}.do(t, hs.URL)
	require.Equal(t, http.StatusOK, code, body)
	_, err = env.Insert.JobGet(context.Background(), b)
	require.ErrorIs(t, err, rivertype.ErrNotFound)

	code, _, body = call{method: "PUT", path: "/riverui/api/queues/terminate/pause", auth: true,
		header: map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin"}}.do(t, hs.URL)
	require.Equal(t, http.StatusOK, code, body)
	require.True(t, queuePaused(t, env, jobs.QueueTerminate))
}

// Finding 1: no page may frame River UI (clickjacking its buttons).
func TestUI_ForbidsFraming(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	for _, c := range []call{
		{method: "GET", path: "/riverui/", auth: true},
		{method: "GET", path: "/riverui/jobs/1", auth: true},
		{method: "GET", path: "/riverui/api/states", auth: true},
		{method: "GET", path: "/riverui/"}, // the 401 page too
	} {
		_, hdr, _ := c.do(t, hs.URL)
		require.Equal(t, "DENY", hdr.Get("X-Frame-Options"), c.path)
		require.Equal(t, "frame-ancestors 'none'", hdr.Get("Content-Security-Policy"), c.path)
	}
}

// Finding 2: with no credentials (loopback only) a DNS-rebinding page
// reaches the worker with its own Host; the review listed jobs, deleted
// one and paused the terminate queue that way. Only loopback Hosts are
// served.
func TestNoAuth_ServesOnlyLoopbackHosts(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, "", "")
	id := waitingJob(t, env)
	knownQueue(t, env, jobs.QueueTerminate)
	for _, host := range []string{"rebind.attacker.example:18080", "rebind.attacker.example", "10.0.0.7:8080",
		"localhost.attacker.example", "127.0.0.1.nip.io:8080", "[2001:db8::1]:8080"} {
		// Same-origin as far as the browser knows: the attacker's page.
		same := map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
		for _, c := range append(writes(id), call{method: "GET", path: "/riverui/api/jobs?state=available"}, call{method: "GET", path: "/metrics"}) {
			t.Run(host+" "+c.method+" "+c.path, func(t *testing.T) {
				c.host, c.header = host, same
				code, _, body := c.do(t, hs.URL)
				require.Equal(t, http.StatusForbidden, code, body)
				require.NotContains(t, body, fmt.Sprint(id))
			})
		}
	}
	job, err := env.Insert.JobGet(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateAvailable, job.State)
	require.False(t, queuePaused(t, env, jobs.QueueTerminate))

	port := hs.URL[strings.LastIndex(hs.URL, ":"):]
	for _, host := range []string{"127.0.0.1" + port, "localhost" + port, "LOCALHOST" + port, "[::1]" + port, "127.9.9.9", "localhost"} {
		code, _, body := call{method: "GET", path: "/riverui/api/jobs?state=available", host: host}.do(t, hs.URL)
		require.Equal(t, http.StatusOK, code, host)
		require.Contains(t, body, fmt.Sprintf(`"id":%d`, id), host)
	}
}

// With credentials the worker may sit behind a proxy that keeps the
// public Host: any Host is served, the login guards it.
func TestAuth_ServesAnyHostWithCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	code, _, _ := call{method: "GET", path: "/riverui/api/states", host: "ops.example.com", auth: true}.do(t, hs.URL)
	require.Equal(t, http.StatusOK, code)
}

// Finding 5: River UI read any body whole (300 MB raised RSS from 25 MB
// to 642 MB). Bodies over MaxUIBody are refused, declared or streamed.
func TestUI_RequestBodiesAreCapped(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	id := waitingJob(t, env)
	self := "http://" + strings.TrimPrefix(hs.URL, "http://")
	big := fmt.Sprintf(`{"ids":["%d"],"pad":"%s"}`, id, strings.Repeat("x", httpapi.MaxUIBody))
	for _, chunked := range []bool{false, true} {
		code, _, body := call{method: "POST", path: "/riverui/api/jobs/cancel", body: big, auth: true, chunked: chunked,
			header: map[string]string{"Content-Type": "application/json", "Origin": self}}.do(t, hs.URL)
		require.True(t, code == http.StatusRequestEntityTooLarge || code == http.StatusBadRequest,
			"chunked=%v: got %d %s", chunked, code, body)
	}
	job, err := env.Insert.JobGet(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateAvailable, job.State, "an oversized request did nothing")
}

// Finding 6: the worker's server had no IdleTimeout or ReadTimeout, so an
// idle kept-alive connection (or a body trickled a byte at a time) stayed
// open for good.
func TestHTTPServer_DefaultsBoundEveryPhase(t *testing.T) {
	t.Parallel()
	srv := httpapi.NewHTTPServer(http.NotFoundHandler(), httpapi.DefaultTimeouts)
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout": srv.ReadTimeout, "WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout} {
		require.Positive(t, d, name)
		require.LessOrEqual(t, d, 5*time.Minute, name)
	}
}

func TestHTTPServer_ClosesIdleAndTricklingConnections(t *testing.T) {
	t.Parallel()
	srv := httpapi.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}), httpapi.Timeouts{ReadHeader: time.Second, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// An idle kept-alive connection is closed: the read sees EOF, not our
	// own deadline.
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(conn)
	require.NoError(t, err, "the server closed the idle connection before our 10 s deadline")

	// A body that never completes is cut off.
	slow, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
	require.NoError(t, err)
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(slow)
	require.NoError(t, err, "the server closed the trickling connection before our 10 s deadline")
}
