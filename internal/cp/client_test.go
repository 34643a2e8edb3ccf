package cp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	testWS   = "0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
	testInst = "i-0123456789abcdef0"
)

// reply is a canned answer.
type reply struct {
	status int
	body   string
	header map[string]string
}

func (r reply) serve(w http.ResponseWriter) {
	for k, v := range r.header {
		if v == "" {
			w.Header()[k] = nil // nil, not "": suppresses Go's sniffed Content-Type
			continue
		}
		w.Header().Set(k, v)
	}
	w.WriteHeader(r.status)
	_, _ = io.WriteString(w, r.body)
}

// testClient starts a server with h and a client pointed at it. The
// returned counter counts requests that reached the server.
func testClient(t *testing.T, h http.HandlerFunc, mod ...func(*Config)) (*Client, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := Config{BaseURL: srv.URL, OrgID: "org-1", SharedSecret: "shared-s3cret",
		AdminToken: "admin-t0ken", AdminAPIKey: "admin-ap1key", Timeout: 5 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c, &hits
}

func canned(r reply) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { r.serve(w) }
}

func provisionReq() ProvisionRequest {
	return ProvisionRequest{WorkspaceID: testWS, Runtime: "python", Tier: 2,
		PlatformURL: "https://p", Env: map[string]string{"K": "V"}, IdempotencyKey: testWS + ":1"}
}

func requireCPError(t *testing.T, err error) *Error {
	t.Helper()
	require.Error(t, err)
	e, ok := asError(err)
	require.True(t, ok, "want *cp.Error, got %T: %v", err, err)
	return e
}

func TestStart_Classification(t *testing.T) {
	t.Parallel()
	big := `{"instance_id":"` + testInst + `","pad":"` + strings.Repeat("x", capJSON) + `"}`
	tests := []struct {
		name    string
		reply   reply
		class   Class // ignored when wantOK
		msg     string
		wantOK  bool
		state   string
		retryIn time.Duration
	}{
		{name: "201 ok", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","private_ip":"10.0.0.1","state":"pending"}`}, wantOK: true, state: "pending"},
		{name: "201 terminated is returned without error", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","state":"terminated"}`}, wantOK: true, state: "terminated"},
		{name: "200 is ambiguous", reply: reply{status: 200, body: `{"instance_id":"` + testInst + `"}`}, class: ClassAmbiguous},
		{name: "202 is ambiguous", reply: reply{status: 202}, class: ClassAmbiguous},
		{name: "409 in progress is ambiguous", reply: reply{status: 409, body: `{"error":"in progress"}`}, class: ClassAmbiguous, msg: "in progress"},
		{name: "400 is permanent", reply: reply{status: 400, body: `{"error":"bad tier"}`}, class: ClassPermanent, msg: "bad tier"},
		{name: "422 is permanent", reply: reply{status: 422, body: `{"error":"no such runtime"}`}, class: ClassPermanent, msg: "no such runtime"},
		{name: "404 retries", reply: reply{status: 404, body: `nope`}, class: ClassRetry, msg: "<unstructured body, 4 bytes>"},
		{name: "401 auth", reply: reply{status: 401, body: `{"error":"unauthorized"}`}, class: ClassAuth, msg: "unauthorized"},
		{name: "403 auth", reply: reply{status: 403}, class: ClassAuth},
		{name: "408 retries", reply: reply{status: 408}, class: ClassRetry},
		{name: "425 retries", reply: reply{status: 425}, class: ClassRetry},
		{name: "429 retries with Retry-After", reply: reply{status: 429, header: map[string]string{"Retry-After": "7"}}, class: ClassRetry, retryIn: 7 * time.Second},
		{name: "500 retries", reply: reply{status: 500, body: `{"error":"boom"}`}, class: ClassRetry, msg: "boom"},
		{name: "503 retries", reply: reply{status: 503}, class: ClassRetry},
		{name: "302 retries", reply: reply{status: 302, header: map[string]string{"Location": "/elsewhere"}}, class: ClassRetry},
		{name: "201 garbage is ambiguous", reply: reply{status: 201, body: `<html>`}, class: ClassAmbiguous, msg: "malformed JSON in 201 body"},
		{name: "201 empty body is ambiguous", reply: reply{status: 201}, class: ClassAmbiguous, msg: "malformed JSON in 201 body"},
		{name: "201 without id is ambiguous", reply: reply{status: 201, body: `{"state":"pending"}`}, class: ClassAmbiguous, msg: "201 without instance id"},
		{name: "201 path traversal id is permanent", reply: reply{status: 201, body: `{"instance_id":"i-1/../../admin"}`}, class: ClassPermanent, msg: "invalid instance id from CP"},
		{name: "201 query id is permanent", reply: reply{status: 201, body: `{"instance_id":"i-1?x="}`}, class: ClassPermanent, msg: "invalid instance id from CP"},
		{name: "201 over 1 MiB is ambiguous", reply: reply{status: 201, body: big}, class: ClassAmbiguous, msg: "response body over"},
		{name: "long message truncated", reply: reply{status: 400, body: `{"error":"` + strings.Repeat("e", 500) + `"}`}, class: ClassPermanent, msg: strings.Repeat("e", maxMessage) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(tt.reply))
			inst, err := c.Start(context.Background(), provisionReq())
			if tt.wantOK {
				require.NoError(t, err)
				require.Equal(t, testInst, inst.InstanceID)
				require.Equal(t, testWS, inst.WorkspaceID)
				require.Equal(t, tt.state, inst.State)
				return
			}
			e := requireCPError(t, err)
			require.Equal(t, "provision", e.Op)
			require.Equal(t, tt.reply.status, e.StatusCode)
			require.Equal(t, tt.class, e.Class, "class %v", e.Class)
			require.Contains(t, e.Message, tt.msg)
			require.Equal(t, tt.retryIn, RetryAfter(err))
			require.Equal(t, tt.class == ClassPermanent, IsPermanent(err))
			require.Equal(t, tt.class == ClassAmbiguous, IsAmbiguous(err))
			require.Equal(t, tt.class == ClassAuth, IsAuth(err))
		})
	}
}

func TestStart_TransportErrorIsAmbiguous(t *testing.T) {
	t.Parallel()
	c, _ := testClient(t, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		require.NoError(t, err)
		_ = conn.Close()
	})
	_, err := c.Start(context.Background(), provisionReq())
	e := requireCPError(t, err)
	require.Equal(t, ClassAmbiguous, e.Class)
	require.Zero(t, e.StatusCode)
	require.NotNil(t, e.Err)
}

func TestStart_SendsContractBodyAndHeaders(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var body []byte
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		reply{status: 201, body: `{"instance_id":"` + testInst + `"}`}.serve(w)
	})
	_, err := c.Start(context.Background(), provisionReq())
	require.NoError(t, err)
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/cp/workspaces/provision", got.URL.Path)
	require.Equal(t, "application/json", got.Header.Get("Content-Type"))
	require.Equal(t, testWS+":1", got.Header.Get("Idempotency-Key"))
	require.Equal(t, "Bearer shared-s3cret", got.Header.Get("Authorization"))
	require.Equal(t, "admin-t0ken", got.Header.Get("X-Molecule-Admin-Token"))
	require.JSONEq(t, `{"org_id":"org-1","workspace_id":"`+testWS+`","runtime":"python","tier":2,
		"platform_url":"https://p","env":{"K":"V"}}`, string(body))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestAuthHeaders_PerRouteFamily(t *testing.T) {
	t.Parallel()
	type seen struct{ auth, admin []string }
	tests := []struct {
		name      string
		shared    string
		adminKey  string
		token     string
		call      func(*Client) error
		wantAuth  []string
		wantAdmin []string
	}{
		{"workspaces route uses shared secret", "s", "k", "t",
			func(c *Client) error { return c.Stop(context.Background(), testWS, testInst) },
			[]string{"Bearer s"}, []string{"t"}},
		{"admin route uses admin api key", "s", "k", "t",
			func(c *Client) error { _, err := c.GetConsoleOutput(context.Background(), testWS); return err },
			[]string{"Bearer k"}, []string{"t"}},
		{"list is a workspaces route", "s", "k", "",
			func(c *Client) error { _, err := c.List(context.Background(), ListOptions{}); return err },
			[]string{"Bearer s"}, nil},
		{"empty values send no header", "", "", "",
			func(c *Client) error { _, err := c.Status(context.Background(), testWS, testInst); return err },
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seen
			c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
				s = seen{r.Header.Values("Authorization"), r.Header.Values("X-Molecule-Admin-Token")}
				reply{status: 200, body: `{"state":"running","output":"","instances":[]}`}.serve(w)
			}, func(cfg *Config) {
				cfg.SharedSecret, cfg.AdminAPIKey, cfg.AdminToken = tt.shared, tt.adminKey, tt.token
			})
			require.NoError(t, tt.call(c))
			require.Equal(t, tt.wantAuth, s.auth)
			require.Equal(t, tt.wantAdmin, s.admin)
		})
	}
}

func TestErrors_NeverCarryRawBody(t *testing.T) {
	t.Parallel()
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_ = r.Header.Write(w) // a misconfigured upstream echoing our headers
		}
	}
	calls := map[string]func(*Client) error{
		"provision": func(c *Client) error { _, err := c.Start(context.Background(), provisionReq()); return err },
		"terminate": func(c *Client) error { return c.Stop(context.Background(), testWS, testInst) },
		"status":    func(c *Client) error { _, err := c.Status(context.Background(), testWS, testInst); return err },
		"console":   func(c *Client) error { _, err := c.GetConsoleOutput(context.Background(), testWS); return err },
		"list":      func(c *Client) error { _, err := c.List(context.Background(), ListOptions{}); return err },
	}
	for op, call := range calls {
		for _, status := range []int{200, 201, 400, 404, 500} {
			t.Run(op+"/"+http.StatusText(status), func(t *testing.T) {
				c, _ := testClient(t, echo(status))
				err := call(c)
				if op == "terminate" && status < 300 {
					require.NoError(t, err) // 2xx terminate needs no body
					return
				}
				require.Error(t, err)
				for _, secret := range []string{"shared-s3cret", "admin-t0ken", "admin-ap1key", "Bearer"} {
					require.NotContains(t, err.Error(), secret)
				}
			})
		}
	}
}

func TestStop_EveryNon2xxIsARetryableFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reply   reply
		ok      bool
		class   Class
		unknown bool
	}{
		{name: "200", reply: reply{status: 200, body: `{}`}, ok: true},
		{name: "202 empty", reply: reply{status: 202}, ok: true},
		{name: "204", reply: reply{status: 204}, ok: true},
		{name: "404 with error field", reply: reply{status: 404, body: `{"error":"instance not found"}`}, class: ClassRetry, unknown: true},
		{name: "bare 404 from a proxy", reply: reply{status: 404, body: `404 page not found`}, class: ClassRetry},
		{name: "404 over the cap is no proof", reply: reply{status: 404, body: `{"error":"x` + strings.Repeat(" ", capTerminate) + `"}`}, class: ClassRetry},
		{name: "400", reply: reply{status: 400, body: `{"error":"bad"}`}, class: ClassRetry},
		{name: "422", reply: reply{status: 422}, class: ClassRetry},
		{name: "409", reply: reply{status: 409}, class: ClassRetry},
		{name: "500", reply: reply{status: 500}, class: ClassRetry},
		{name: "302", reply: reply{status: 302, header: map[string]string{"Location": "/x"}}, class: ClassRetry},
		{name: "401", reply: reply{status: 401}, class: ClassAuth},
		{name: "2xx over 64 KiB", reply: reply{status: 200, body: strings.Repeat(" ", capTerminate+1)}, class: ClassRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path, query, method string
			c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
				path, query, method = r.URL.Path, r.URL.RawQuery, r.Method
				tt.reply.serve(w)
			})
			err := c.Stop(context.Background(), testWS, testInst)
			require.Equal(t, http.MethodDelete, method)
			require.Equal(t, "/cp/workspaces/"+testWS, path)
			require.Equal(t, "instance_id="+testInst, query)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			e := requireCPError(t, err)
			require.Equal(t, tt.class, e.Class)
			require.False(t, IsPermanent(err))
			require.Equal(t, tt.reply.status, StatusCode(err))
			require.Equal(t, tt.unknown, IsUnknownInstance(err))
		})
	}
}

func TestStatusAndIsRunning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		reply     reply
		state     string
		running   bool
		wantErr   bool
		unknownID bool
	}{
		{name: "running", reply: reply{status: 200, body: `{"state":"running"}`}, state: "running", running: true},
		{name: "pending", reply: reply{status: 200, body: `{"state":"pending"}`}, state: "pending"},
		{name: "terminated", reply: reply{status: 200, body: `{"state":"terminated"}`}, state: "terminated"},
		{name: "500", reply: reply{status: 500}, running: true, wantErr: true},
		{name: "404 unknown", reply: reply{status: 404, body: `{"error":"instance not found"}`}, running: true, wantErr: true, unknownID: true},
		{name: "bad JSON", reply: reply{status: 200, body: `{"state":`}, running: true, wantErr: true},
		{name: "empty state", reply: reply{status: 200, body: `{}`}, running: true, wantErr: true},
		{name: "over 1 MiB", reply: reply{status: 200, body: `{"state":"running","x":"` + strings.Repeat("x", capJSON) + `"}`}, running: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path, query string
			c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
				path, query = r.URL.Path, r.URL.RawQuery
				tt.reply.serve(w)
			})
			state, err := c.Status(context.Background(), testWS, testInst)
			require.Equal(t, "/cp/workspaces/"+testWS+"/status", path)
			require.Equal(t, "instance_id="+testInst, query)
			require.Equal(t, tt.state, state)
			require.Equal(t, tt.wantErr, err != nil, "err %v", err)
			require.Equal(t, tt.unknownID, IsUnknownInstance(err))

			running, err := c.IsRunning(context.Background(), testWS, testInst)
			require.Equal(t, tt.running, running)
			require.Equal(t, tt.wantErr, err != nil)
		})
	}
}

func TestIsRunning_NoInstanceMakesNoRequest(t *testing.T) {
	t.Parallel()
	c, hits := testClient(t, canned(reply{status: 500}))
	running, err := c.IsRunning(context.Background(), testWS, "")
	require.NoError(t, err)
	require.False(t, running)
	require.Zero(t, hits.Load())
}

func TestIsRunning_TransportErrorKeepsAlive(t *testing.T) {
	t.Parallel()
	c, err := New(Config{BaseURL: "http://127.0.0.1:1", OrgID: "o", Timeout: time.Second})
	require.NoError(t, err)
	running, err := c.IsRunning(context.Background(), testWS, testInst)
	require.True(t, running)
	e := requireCPError(t, err)
	require.Zero(t, e.StatusCode)
	require.Equal(t, ClassRetry, e.Class)
}

func TestInvalidIDs_RejectedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	bad := []struct{ ws, inst string }{
		{"not-a-uuid", testInst},
		{"../admin", testInst},
		{testWS, "i-1/../../admin"},
		{testWS, "i-1?x="},
		{testWS, testWS}, // the reference client's old bug: a UUID as instance id
	}
	for _, b := range bad {
		c, hits := testClient(t, canned(reply{status: 200, body: `{"state":"running"}`}))
		ctx := context.Background()
		var errs []error
		errs = append(errs, c.Stop(ctx, b.ws, b.inst))
		_, err := c.Status(ctx, b.ws, b.inst)
		errs = append(errs, err)
		if b.ws != testWS {
			_, err = c.Start(ctx, ProvisionRequest{WorkspaceID: b.ws})
			errs = append(errs, err)
			_, err = c.GetConsoleOutput(ctx, b.ws)
			errs = append(errs, err)
			_, err = c.List(ctx, ListOptions{WorkspaceID: b.ws})
			errs = append(errs, err)
		}
		for _, err := range errs {
			e := requireCPError(t, err)
			require.Equal(t, ClassPermanent, e.Class, "%v", err)
			require.Zero(t, e.StatusCode)
		}
		require.Zero(t, hits.Load(), "ws=%q inst=%q", b.ws, b.inst)
	}
}

func TestRedirects_NeverFollowed(t *testing.T) {
	t.Parallel()
	var second atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		second.Add(1)
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"instance_id":"`+testInst+`"}`)
	}))
	defer other.Close()
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}, func(cfg *Config) { cfg.HTTPClient = &http.Client{} }) // even a caller's default client
	_, err := c.Start(context.Background(), provisionReq())
	e := requireCPError(t, err)
	require.Equal(t, 302, e.StatusCode)
	require.Equal(t, ClassRetry, e.Class)
	require.Zero(t, second.Load())
}

func TestRedirects_StopIsAFailure(t *testing.T) {
	t.Parallel()
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/", http.StatusTemporaryRedirect)
	})
	err := c.Stop(context.Background(), testWS, testInst)
	require.Equal(t, 307, StatusCode(err))
	require.Equal(t, ClassRetry, requireCPError(t, err).Class)
}

func TestList_Query(t *testing.T) {
	t.Parallel()
	var q map[string][]string
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/cp/workspaces", r.URL.Path)
		q = r.URL.Query()
		reply{status: 200, body: `{"instances":[]}`}.serve(w)
	})
	_, err := c.List(context.Background(), ListOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"org_id": {"org-1"}, "limit": {"500"}}, q)
	_, err = c.List(context.Background(), ListOptions{WorkspaceID: testWS, Cursor: "a&b=c/d", Limit: 7})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"org_id": {"org-1"}, "limit": {"7"}, "cursor": {"a&b=c/d"},
		"workspace_id": {testWS}}, q)
}

func TestConsole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reply   reply
		want    string
		wantErr bool
	}{
		{name: "ok", reply: reply{status: 200, body: `{"output":"boot ok"}`}, want: "boot ok"},
		{name: "500", reply: reply{status: 500}, wantErr: true},
		{name: "no output field", reply: reply{status: 200, body: `{}`}, wantErr: true},
		{name: "over 256 KiB", reply: reply{status: 200, body: `{"output":"` + strings.Repeat("x", capConsole) + `"}`}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
				require.Equal(t, "/cp/admin/workspaces/"+testWS+"/console", r.URL.Path)
				tt.reply.serve(w)
			})
			out, err := c.GetConsoleOutput(context.Background(), testWS)
			require.Equal(t, tt.wantErr, err != nil, "%v", err)
			require.Equal(t, tt.want, out)
		})
	}
}

func TestContextCancel_WrapsCanceled(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	arrived := make(chan struct{}, 8)
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	calls := map[string]func(context.Context) error{
		"provision": func(ctx context.Context) error { _, err := c.Start(ctx, provisionReq()); return err },
		"terminate": func(ctx context.Context) error { return c.Stop(ctx, testWS, testInst) },
		"list":      func(ctx context.Context) error { _, err := c.List(ctx, ListOptions{}); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-arrived; cancel() }()
			err := call(ctx)
			require.ErrorIs(t, err, context.Canceled)
			requireCPError(t, err)
		})
	}
}

func TestTimeout_CutsOffAStalledBody(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"state":`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(cfg *Config) { cfg.Timeout = 100 * time.Millisecond })
	start := time.Now()
	_, err := c.Status(context.Background(), testWS, testInst)
	require.Less(t, time.Since(start), 3*time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	e := requireCPError(t, err)
	require.Equal(t, 200, e.StatusCode)
	require.Equal(t, ClassRetry, e.Class)
}

func TestTimeout_StalledProvisionBodyIsAmbiguous(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(cfg *Config) { cfg.Timeout = 100 * time.Millisecond })
	_, err := c.Start(context.Background(), provisionReq())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, IsAmbiguous(err))
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"-3", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Fri, 02 Jan 2026 03:05:05 GMT", time.Minute},
		{"Friday, 02-Jan-26 03:05:05 GMT", time.Minute}, // RFC 850
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, parseRetryAfter(tt.in, now), tt.in)
	}
}

func TestRetryAfter_HTTPDateFromServer(t *testing.T) {
	t.Parallel()
	c, _ := testClient(t, canned(reply{status: 503, header: map[string]string{
		"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}))
	err := c.Stop(context.Background(), testWS, testInst)
	require.InDelta(t, time.Hour.Seconds(), RetryAfter(err).Seconds(), 5)
}

func TestOnRequest_ReportsRouteAndStatus(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	c, _ := testClient(t, canned(reply{status: 500}), func(cfg *Config) {
		cfg.OnRequest = func(route string, status int, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, route+":"+http.StatusText(status))
		}
	})
	_ = c.Stop(context.Background(), testWS, testInst)
	_, _ = c.List(context.Background(), ListOptions{})
	_ = c.Stop(context.Background(), "bad", testInst) // no request, no report
	require.Equal(t, []string{"terminate:Internal Server Error", "list:Internal Server Error"}, got)

	dead, err := New(Config{BaseURL: "http://127.0.0.1:1", OrgID: "o", OnRequest: func(route string, status int, _ time.Duration) {
		got = append(got, route+":"+http.StatusText(status))
	}})
	require.NoError(t, err)
	_, _ = dead.Status(context.Background(), testWS, testInst)
	require.Equal(t, "status:", got[len(got)-1])
}

func TestError_Format(t *testing.T) {
	t.Parallel()
	require.Equal(t, "cp: terminate: status 500: boom",
		(&Error{Op: "terminate", StatusCode: 500, Message: "boom"}).Error())
	require.Equal(t, "cp: status: context canceled",
		(&Error{Op: "status", Err: context.Canceled}).Error())
	require.Equal(t, "retry", ClassRetry.String())
}

func TestErrorField_StripsControlCharacters(t *testing.T) {
	t.Parallel()
	msg := errorField([]byte(`{"error":"line1\nlevel=error forged"}`), secrets{})
	require.Equal(t, "line1 level=error forged", msg)
	require.Equal(t, "<unstructured body, 2 bytes>", errorField([]byte(`{}`), secrets{}))
}

func TestErrorField_RedactsConfiguredSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
	}{
		{"bearer echoed", `{"error":"bad request: Authorization: Bearer s3cret-shared"}`},
		{"admin token echoed", `{"error":"token adm-TOKEN-1 not allowed"}`},
		{"secret past the cap", `{"error":"` + strings.Repeat("x", 190) + `s3cret-shared"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := errorField([]byte(tt.body), secrets{credentials: []string{"s3cret-shared", "adm-TOKEN-1", ""}})
			require.NotContains(t, msg, "s3cret")
			require.NotContains(t, msg, "adm-TOKEN")
		})
	}
}

// A provision whose connection breaks after the CP read it must reach the
// CP once per call. Go's transport replays requests that look idempotent
// on a broken reused connection, and an Idempotency-Key header makes a
// POST look so: against a CP that ignores the key, each replay launched
// another instance.
func TestStart_BrokenConnectionIsNotReplayedByTheTransport(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	c, hits := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			reply{status: http.StatusCreated, body: `{"instance_id":"i-0123456789abcdef0","state":"running"}`}.serve(w)
			return
		}
		// Acted, then the answer is lost: drop the kept-alive connection.
		conn, _, err := w.(http.Hijacker).Hijack()
		require.NoError(t, err)
		_ = conn.Close()
	})
	_, err := c.Start(context.Background(), provisionReq()) // opens the kept-alive connection
	require.NoError(t, err)

	_, err = c.Start(context.Background(), provisionReq())
	require.Error(t, err)
	require.True(t, IsAmbiguous(err))
	require.EqualValues(t, 2, hits.Load(), "the transport re-sent the provision")
}
