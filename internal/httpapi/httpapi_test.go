package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
)

const (
	uiUser = "operator"
	uiPass = "s3cret-PASS-for-ui"
)

// newServer serves the real handler over a River client of env.
func newServer(t *testing.T, env *jobtest.Env, pool *pgxpool.Pool, user, pass string) (*httpapi.Server, *httptest.Server) {
	t.Helper()
	srv, err := httpapi.New(httpapi.Config{Pool: pool, River: env.Worker, Registry: env.Metrics.Registry,
		User: user, Pass: pass})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, srv.Start(ctx))
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs
}

func get(t *testing.T, url string, auth func(*http.Request)) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

// Every path River UI answers, including its API (which can retry and
// cancel jobs) and the bare prefix, must sit behind the same check.
var uiPaths = []string{"/riverui", "/riverui/", "/riverui/jobs/1", "/riverui/api/jobs?state=discarded",
	"/riverui/api/states", "/riverui/api/queues"}

func TestBasicAuth_RejectsMissingOrWrongCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	cases := []struct {
		name string
		auth func(*http.Request)
	}{
		{"none", nil},
		{"wrong user", basic("admin", uiPass)},
		{"wrong pass", basic(uiUser, "nope")},
		{"pass with right prefix", basic(uiUser, uiPass[:5])},
		{"pass with extra suffix", basic(uiUser, uiPass+"x")},
		{"empty", basic("", "")},
		{"swapped", basic(uiPass, uiUser)},
		{"bearer not basic", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+uiPass) }},
	}
	for _, tc := range cases {
		for _, path := range uiPaths {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				code, hdr, body := get(t, hs.URL+path, tc.auth)
				require.Equal(t, http.StatusUnauthorized, code)
				require.Equal(t, "unauthorized\n", body, "a 401 says nothing about which part was wrong")
				require.Contains(t, hdr.Get("WWW-Authenticate"), `Basic realm="River UI"`)
			})
		}
	}
}

func TestBasicAuth_RetryEndpointRefusedWithoutCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	resp, err := http.Post(hs.URL+"/riverui/api/jobs/retry", "application/json", strings.NewReader(`{"ids":["1"]}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestBasicAuth_ServesUIWithCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	code, _, body := get(t, hs.URL+"/riverui/", basic(uiUser, uiPass))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<html")
	code, hdr, body := get(t, hs.URL+"/riverui/api/jobs?state=discarded", basic(uiUser, uiPass))
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, hdr.Get("Content-Type"), "application/json")
	require.Contains(t, body, `"data"`)
}

func TestNoCredentials_ServesUIOpen(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	_, hs := newServer(t, env, env.Pool, "", "")
	code, _, _ := get(t, hs.URL+"/riverui/api/states", nil)
	require.Equal(t, http.StatusOK, code, "with no credentials configured (loopback only) the UI is open")
}

func TestProbes_NeedNoCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	srv, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	code, _, body := get(t, hs.URL+"/healthz", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, _, _ = get(t, hs.URL+"/metrics", nil)
	require.Equal(t, http.StatusOK, code)

	started := false
	srv.SetStarted(func() bool { return started })
	code, _, body = get(t, hs.URL+"/readyz", nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "river client not started")
	started = true
	code, _, body = get(t, hs.URL+"/readyz", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready\n", body)
}

func TestReadyz_DatabaseUnreachable(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	pool, err := pgxpool.New(context.Background(), env.DBURL)
	require.NoError(t, err)
	pool.Close() // a closed pool answers every query with an error
	srv, hs := newServer(t, env, pool, uiUser, uiPass)
	srv.SetStarted(func() bool { return true })
	code, _, body := get(t, hs.URL+"/readyz", nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "database unreachable")
	require.NotContains(t, body, env.DBURL, "the probe never echoes the database URL")
}
