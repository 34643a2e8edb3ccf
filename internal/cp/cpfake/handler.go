package cpfake

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// Route names, as in cp.Error.Op.
const (
	RouteProvision = "provision"
	RouteTerminate = "terminate"
	RouteStatus    = "status"
	RouteConsole   = "console"
	RouteList      = "list"
)

// exchange is one request in flight.
type exchange struct {
	w      http.ResponseWriter
	r      *http.Request
	route  string
	body   []byte
	ws     string
	inst   string
	status int
	fault  string
	lost   bool // LostAnswer: act, then reset instead of answering

	dialect Dialect
}

// Handler serves the CP routes of docs/design.md#routes-and-auth, plus
// GET /fake/stats.
func (f *Fake) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cp/workspaces/provision", f.wrap(RouteProvision, f.provision))
	mux.HandleFunc("DELETE /cp/workspaces/{ws}", f.wrap(RouteTerminate, f.terminate))
	mux.HandleFunc("GET /cp/workspaces/{ws}/status", f.wrap(RouteStatus, f.status))
	mux.HandleFunc("GET /cp/admin/workspaces/{ws}/console", f.wrap(RouteConsole, f.console))
	mux.HandleFunc("GET /cp/workspaces", f.wrap(RouteList, f.list))
	mux.HandleFunc("GET /fake/stats", f.serveStats)
	return mux
}

// wrap applies what every CP route shares: logging, latency, credentials,
// scripted failures and random faults, in that order.
func (f *Fake) wrap(route string, h func(*exchange)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		x := &exchange{w: w, r: r, route: route, body: body, ws: r.PathValue("ws"),
			inst: r.URL.Query().Get("instance_id"), dialect: f.opts.Dialect}
		f.record(x)
		defer f.served(x, start)
		f.arrived(x, start)
		if !f.wait(r.Context(), f.latency()) {
			x.reset()
			return
		}
		if !f.authorized(r) {
			x.reply(http.StatusUnauthorized, errBody("unauthorized"))
			return
		}
		if f.inject(x) {
			return
		}
		h(x)
	}
}

func (f *Fake) record(x *exchange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch x.route {
	case RouteProvision:
		f.stats.Provisions++
	case RouteTerminate:
		f.stats.Terminates++
	case RouteStatus:
		f.stats.Statuses++
	case RouteList:
		f.stats.Lists++
	case RouteConsole:
		f.stats.Consoles++
	}
	if f.opts.MaxRequestLog < 0 {
		return
	}
	if len(f.reqs) >= f.opts.MaxRequestLog {
		f.reqs = f.reqs[1:]
	}
	f.reqs = append(f.reqs, Request{Route: x.route, Method: x.r.Method, Path: x.r.URL.Path,
		Query: x.r.URL.RawQuery, Header: x.r.Header.Clone(), Body: x.body, At: f.now(),
		TraceParent: x.r.Header.Get("Traceparent")})
}

func (f *Fake) served(x *exchange, start time.Time) {
	if f.opts.OnServe != nil {
		f.opts.OnServe(Served{Method: x.r.Method, Route: x.route, Status: x.status, Fault: x.fault,
			WorkspaceID: x.ws, InstanceID: x.inst, Duration: time.Since(start)})
	}
}

// wait sleeps d unless the request ends or the Fake closes first.
// arrived tells OnArrival of a request.
func (f *Fake) arrived(x *exchange, at time.Time) {
	if f.opts.OnArrival == nil {
		return
	}
	ws := x.ws
	if x.route == RouteProvision {
		var req struct {
			WorkspaceID string `json:"workspace_id"`
		}
		if json.Unmarshal(x.body, &req) == nil {
			ws = req.WorkspaceID
		}
	}
	f.opts.OnArrival(x.route, ws, at)
}

// latency is this request's: Latency, or a seeded draw up to LatencyMax.
func (f *Fake) latency() time.Duration {
	lo, hi := f.opts.Latency, f.opts.LatencyMax
	if hi <= lo {
		return lo
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return lo + time.Duration(f.rng.Int64N(int64(hi-lo)+1))
}

func (f *Fake) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-f.done:
	}
	return false
}

// authorized checks the credentials of the route family, like the real CP.
func (f *Fake) authorized(r *http.Request) bool {
	bearer := f.opts.SharedSecret
	if strings.HasPrefix(r.URL.Path, "/cp/admin/") {
		bearer = f.opts.AdminAPIKey
	}
	return headerIs(r, "Authorization", "Bearer ", bearer) &&
		headerIs(r, "X-Molecule-Admin-Token", "", f.opts.AdminToken)
}

func headerIs(r *http.Request, name, prefix, want string) bool {
	if want == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get(name)), []byte(prefix+want)) == 1
}

// inject applies a scripted failure or a random fault. It reports whether
// the request was fully handled (answered, stalled or reset).
func (f *Fake) inject(x *exchange) bool {
	f.mu.Lock()
	if q := f.failNext[x.route]; len(q) > 0 {
		f.failNext[x.route] = q[1:]
		f.stats.FaultsInjected++
		f.mu.Unlock()
		x.fault = "scripted"
		if q[0].retryAfter > 0 {
			x.w.Header().Set("Retry-After", strconv.Itoa(max(1, int(q[0].retryAfter.Seconds()))))
		}
		x.reply(q[0].status, errBody("injected"))
		return true
	}
	if x.route == RouteConsole {
		f.mu.Unlock()
		return false
	}
	fl := f.faults
	switch {
	case f.rng.Float64() < fl.Error5xx:
		x.fault = "5xx"
	case f.rng.Float64() < fl.Timeout:
		x.fault = "timeout"
	case f.rng.Float64() < fl.Reset:
		x.fault = "reset"
	case f.rng.Float64() < fl.LostAnswer:
		x.fault, x.lost = "lost_answer", true
	}
	if x.fault != "" {
		f.stats.FaultsInjected++
	}
	f.mu.Unlock()
	switch x.fault {
	case "5xx":
		x.reply(http.StatusServiceUnavailable, errBody("injected"))
	case "timeout":
		f.wait(x.r.Context(), time.Duration(1<<62))
		x.reset()
	case "reset":
		x.reset()
	default:
		return false // no fault, or lost_answer: the handler acts first
	}
	return true
}

// reply answers with a JSON body, unless the answer is to be lost.
func (x *exchange) reply(status int, v any) {
	if x.lost {
		x.reset()
		return
	}
	x.status = status
	if x.dialect != DialectPlainGo {
		x.w.Header().Set("Content-Type", "application/json")
	}
	x.w.WriteHeader(status)
	if status != http.StatusNoContent {
		_ = json.NewEncoder(x.w).Encode(v)
	}
}

// reset drops the connection with an RST, so the client sees a transport
// error after possibly having sent the request: the ambiguous case.
func (x *exchange) reset() {
	x.status = 0
	hj, ok := x.w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2 or a wrapped writer: abort the stream
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func errBody(msg string) map[string]string { return map[string]string{"error": msg} }

func (f *Fake) provision(x *exchange) {
	var req struct {
		OrgID       string `json:"org_id"`
		WorkspaceID string `json:"workspace_id"`
	}
	if json.Unmarshal(x.body, &req) != nil {
		x.reply(http.StatusBadRequest, errBody("malformed JSON"))
		return
	}
	x.ws = req.WorkspaceID
	if !cp.ValidWorkspaceID(req.WorkspaceID) {
		x.reply(http.StatusBadRequest, errBody("invalid workspace_id"))
		return
	}
	if f.opts.OrgID != "" && req.OrgID != f.opts.OrgID {
		x.reply(http.StatusForbidden, errBody("org mismatch"))
		return
	}
	key := x.r.Header.Get("Idempotency-Key")
	if f.opts.IgnoreIdempotency {
		key = ""
	}
	inst, fresh, ok := f.beginProvision(key, req.WorkspaceID)
	if !ok {
		x.reply(http.StatusConflict, errBody("in progress"))
		return
	}
	x.inst = inst.InstanceID
	if fresh {
		f.mu.Lock()
		hook := f.hook
		f.mu.Unlock()
		if hook != nil {
			hook(req.WorkspaceID, inst)
		}
		inst = f.finishProvision(key, inst.InstanceID)
	}
	x.replyProvision(inst)
}

// beginProvision launches an instance, or replays the instance of a known
// idempotency key (whatever its state now). ok is false while another
// request with the same key is still being answered.
func (f *Fake) beginProvision(key, ws string) (inst cp.Instance, fresh, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, seen := f.idem[key]; key != "" && seen {
		if e.inst == nil {
			return cp.Instance{}, false, false
		}
		return f.viewLocked(e.inst, f.now()), false, true
	}
	in := f.launchLocked(ws)
	if key != "" {
		f.idem[key] = &idemEntry{} // in flight until finishProvision
	}
	return f.viewLocked(in, f.now()), true, true
}

func (f *Fake) finishProvision(key, id string) cp.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.byID[id]
	if key != "" {
		f.idem[key].inst = in
	}
	return f.viewLocked(in, f.now())
}

// lookupLocked finds an instance of ws; a workspace mismatch is "not
// found", as the real CP checks the WorkspaceID tag.
func (f *Fake) lookupLocked(ws, id string) *instance {
	in := f.byID[id]
	if in == nil || !strings.EqualFold(in.ws, ws) {
		return nil
	}
	return in
}

func (f *Fake) terminate(x *exchange) {
	if x.inst == "" {
		x.reply(http.StatusBadRequest, errBody("instance_id required"))
		return
	}
	f.mu.Lock()
	in := f.lookupLocked(x.ws, x.inst)
	if in != nil {
		f.terminateLocked(in)
	}
	f.mu.Unlock()
	if in == nil {
		x.reply(http.StatusNotFound, errBody("instance not found"))
		return
	}
	x.replyTerminated()
}

func (f *Fake) status(x *exchange) {
	f.mu.Lock()
	in := f.lookupLocked(x.ws, x.inst)
	var state string
	if in != nil {
		state = f.settle(in, f.now().UnixNano())
	}
	f.mu.Unlock()
	if in == nil {
		x.reply(http.StatusNotFound, errBody("instance not found"))
		return
	}
	x.reply(http.StatusOK, map[string]string{"state": state})
}

func (f *Fake) console(x *exchange) {
	f.mu.Lock()
	out, ok := f.consoles[x.ws]
	f.mu.Unlock()
	if !ok {
		out = "console for " + x.ws
	}
	x.reply(http.StatusOK, map[string]string{"output": out})
}

func (f *Fake) list(x *exchange) {
	if f.opts.NoList {
		x.status = http.StatusNotFound
		http.NotFound(x.w, x.r) // a bare 404, like a CP without the route
		return
	}
	q := x.r.URL.Query()
	x.ws = q.Get("workspace_id")
	limit, msg := parseLimit(q.Get("limit"))
	switch {
	case f.opts.OrgID != "" && q.Get("org_id") != f.opts.OrgID:
		x.reply(http.StatusForbidden, errBody("org mismatch"))
		return
	case msg != "":
		x.reply(http.StatusBadRequest, errBody(msg))
		return
	case x.ws != "" && !cp.ValidWorkspaceID(x.ws):
		x.reply(http.StatusBadRequest, errBody("invalid workspace_id"))
		return
	}
	f.mu.Lock()
	page, next, err := f.pageLocked(x.ws, q.Get("cursor"), limit)
	f.mu.Unlock()
	if err != nil {
		x.reply(http.StatusBadRequest, errBody(err.Error()))
		return
	}
	x.replyPage(page, next)
}

func parseLimit(s string) (int, string) {
	if s == "" {
		return defaultPage, ""
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, "invalid limit"
	}
	return min(n, maxPage), ""
}

func (f *Fake) serveStats(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Stats
		Live int `json:"live"`
	}{f.Stats(), f.LiveCount()}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
