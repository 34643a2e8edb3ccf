package cp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Route names, used as Error.Op and as the OnRequest route label.
const (
	opProvision = "provision"
	opTerminate = "terminate"
	opStatus    = "status"
	opConsole   = "console"
	opList      = "list"
)

// Body caps. The CP only ever answers small JSON; an unbounded read lets a
// broken or compromised upstream exhaust memory. Bodies over the cap are a
// failure, never a truncated success.
const (
	capJSON      = 1 << 20   // provision, status, list page
	capTerminate = 64 << 10  // terminate answers carry nothing we use
	capConsole   = 256 << 10 // EC2 console is ≤64 KiB, plus CP wrapping
	capDrain     = 4 << 10   // extra bytes read on close to reuse the connection
)

// API is the narrow seam the workers use, so tests substitute cpfake or a
// stub without widening anything.
type API interface {
	Start(ctx context.Context, req ProvisionRequest) (Instance, error)
	Stop(ctx context.Context, workspaceID, instanceID string) error
	Status(ctx context.Context, workspaceID, instanceID string) (string, error)
	IsRunning(ctx context.Context, workspaceID, instanceID string) (bool, error)
	GetConsoleOutput(ctx context.Context, workspaceID string) (string, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
}

// Compile-time check: signature drift breaks the build, not a deploy.
var _ API = (*Client)(nil)

// Client calls the CP. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string
	hc     *http.Client
	now    func() time.Time
	tracer trace.Tracer
}

// New validates cfg and builds a Client. Redirects are never followed: Go's
// default would forward X-Molecule-Admin-Token to whatever host a 3xx names.
func New(cfg Config) (*Client, error) {
	if cfg.OrgID == "" {
		return nil, fmt.Errorf("%w: OrgID is required", ErrConfig)
	}
	if err := checkBaseURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("%w: BaseURL: %s", ErrConfig, err.Error())
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: Timeout must be positive", ErrConfig)
	}
	hc := http.Client{Transport: pooledTransport()}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient // copy: never change the caller's client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), hc: &hc, now: time.Now, tracer: newTracer()}, nil
}

// pooledTransport is Go's default transport with room for every worker's
// kept-alive connection: the default keeps 2 per host, so 40 concurrent
// jobs would open (and, against the real CP, TLS-handshake) a new
// connection for most calls.
func pooledTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

// OrgID is the org every provision and list is made for.
func (c *Client) OrgID() string { return c.cfg.OrgID }

// Timeout is the per-request bound; job timeouts must exceed it.
func (c *Client) Timeout() time.Duration { return c.cfg.Timeout }

// call describes one request. Paths are built by the callers from ids that
// were validated and escaped first.
type call struct {
	op      string
	method  string
	path    string
	query   url.Values
	body    []byte
	admin   bool
	limit   int64
	idemKey string
}

// answer is an HTTP response that was read completely within its cap.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request under the per-request timeout and reads the body
// within the cap (do adds the trace span). Only transport and read failures
// are errors here; status handling is the caller's.
func (c *Client) send(ctx context.Context, k call) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := c.newRequest(ctx, k)
	if err != nil {
		return answer{}, &Error{Op: k.op, Class: ClassPermanent, Err: err}
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.report(k.op, 0, start)
		return answer{}, c.transportError(ctx, k.op, 0, err)
	}
	defer closeBody(resp.Body)
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.limit+1))
	c.report(k.op, resp.StatusCode, start)
	if err != nil {
		return answer{}, c.transportError(ctx, k.op, resp.StatusCode, err)
	}
	if int64(len(body)) > k.limit {
		return answer{}, &Error{Op: k.op, StatusCode: resp.StatusCode, Class: readFailureClass(k.op, resp.StatusCode),
			Message: fmt.Sprintf("<response body over %d bytes>", k.limit)}
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func (c *Client) newRequest(ctx context.Context, k call) (*http.Request, error) {
	u := c.base + k.path
	if len(k.query) > 0 {
		u += "?" + k.query.Encode()
	}
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, u, body)
	if err != nil {
		return nil, errors.New("cannot build request")
	}
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
		// Go's transport silently re-sends a request whose connection
		// broke if it looks idempotent, and an Idempotency-Key header makes
		// a POST look so. Against a CP that ignores the key, one provision
		// attempt whose answers were lost launched up to four instances.
		// Without GetBody the transport cannot replay it: the job's own
		// retry, which lists and adopts first, is the only retry.
		req.GetBody = nil
	}
	req.Header.Set("Accept", "application/json")
	c.setAuth(req, k.admin)
	injectTraceParent(ctx, req.Header)
	if k.idemKey != "" {
		req.Header.Set("Idempotency-Key", k.idemKey)
	}
	return req, nil
}

// setAuth sets the credentials of the route family. /cp/admin/* takes its
// own key so a leaked provision secret cannot read other tenants' serial
// consoles. An empty value sends no header (self-hosted / dev CPs).
func (c *Client) setAuth(req *http.Request, admin bool) {
	bearer := c.cfg.SharedSecret
	if admin {
		bearer = c.cfg.AdminAPIKey
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if c.cfg.AdminToken != "" {
		req.Header.Set("X-Molecule-Admin-Token", c.cfg.AdminToken)
	}
}

func (c *Client) report(op string, status int, start time.Time) {
	if c.cfg.OnRequest != nil {
		c.cfg.OnRequest(op, status, time.Since(start))
	}
}

// transportError wraps a failure with no (complete) HTTP answer. The URL is
// dropped from *url.Error (it is noise in logs); the context's error is kept
// reachable, because River requeues a job without spending an attempt only
// when the error wraps context.Canceled.
func (c *Client) transportError(ctx context.Context, op string, status int, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	class := ClassRetry
	if op == opProvision {
		// The request may have reached the CP, which may have launched.
		class = ClassAmbiguous
	}
	if status != 0 {
		class = readFailureClass(op, status)
	}
	return &Error{Op: op, StatusCode: status, Class: class, Err: err}
}

// readFailureClass classifies an answer whose body could not be read: a
// provision 201 (or other 2xx) may stand for a launched instance.
func readFailureClass(op string, status int) Class {
	if op == opProvision && status >= 200 && status < 300 {
		return ClassAmbiguous
	}
	if status >= 200 && status < 300 {
		return ClassRetry
	}
	return classify(op, status)
}

// closeBody drains a bounded remainder (so the connection can be reused)
// and closes; an unbounded drain would hand a stalling server our goroutine.
func closeBody(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, capDrain))
	_ = b.Close()
}

// failure turns a non-success answer into an *Error.
func (c *Client) failure(op string, a answer) *Error { return c.failureWithEnv(op, a, nil) }

// failureWithEnv is failure for a call that sent env values: the CP's
// message is cleared of them as well as of the credentials.
func (c *Client) failureWithEnv(op string, a answer, env map[string]string) *Error {
	sec := secrets{credentials: []string{c.cfg.SharedSecret, c.cfg.AdminToken, c.cfg.AdminAPIKey}, env: env}
	e := &Error{
		Op:         op,
		StatusCode: a.status,
		Message:    errorField(a.body, sec),
		RetryAfter: parseRetryAfter(a.header.Get("Retry-After"), c.now()),
		Class:      classify(op, a.status),
	}
	if op == opList && (a.status == http.StatusNotFound || a.status == http.StatusMethodNotAllowed) {
		e.Err = ErrListUnsupported
	}
	return e
}

// invalidArg is the error for an id that failed validation: no request is
// made, so nothing a hostile value could steer is ever sent.
func invalidArg(op, what string) *Error {
	return &Error{Op: op, Class: ClassPermanent, Message: what}
}

func statusOK(s int) bool { return s >= 200 && s < 300 }

func itoa(n int) string { return strconv.Itoa(n) }
