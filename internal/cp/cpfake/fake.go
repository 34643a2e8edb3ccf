// Package cpfake is a fake control plane: a real net/http server that holds
// instances in memory with a lifecycle (pending → running, shutting-down →
// terminated), honours or ignores Idempotency-Key, and injects faults. Unit
// tests, chaos tests, benchmarks and cmd/cpsim run the worker against it.
//
// Lifecycle transitions are computed lazily from the clock when an instance
// is looked at, so 100,000 seeded instances cost one small struct each and
// no goroutines.
package cpfake

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// Instance states the fake uses.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
)

// Options configure a Fake.
type Options struct {
	OrgID string // provision and list requests for another org get 403

	// Credentials: when non-empty, requests without the right header get
	// 401 {"error":"unauthorized"}. AdminAPIKey gates /cp/admin/*.
	SharedSecret, AdminToken, AdminAPIKey string

	Dialect           Dialect       // how answers are written (DialectFull by default)
	IgnoreIdempotency bool          // a retried provision launches a duplicate
	NoList            bool          // the list endpoint answers 404 (a CP without endpoint 5)
	Latency           time.Duration // added to every request before acting
	LatencyMax        time.Duration // above Latency: each request's latency is a uniform draw from [Latency, LatencyMax] (Seed)
	BootTime          time.Duration // pending → running after this (0: running at once)
	ShutdownTime      time.Duration // shutting-down → terminated after this (0: terminated at once)
	Faults            Faults
	Seed              int64            // seed for fault and latency draws (0 is a seed like any other)
	Now               func() time.Time // clock; time.Now when nil

	// MaxRequestLog bounds the Requests log (oldest dropped). 0 means
	// 100,000; negative disables the log.
	MaxRequestLog int

	// OnArrival, if set, is called (blocking, without the Fake's lock)
	// when a request arrives, before its latency and before anything is
	// checked: a bench's pickup ends when the CP receives the call.
	// workspaceID is the path's, or for a provision its body's.
	OnArrival func(route, workspaceID string, at time.Time)

	// OnServe, if set, is called after every request with what was done
	// (cmd/cpsim logs it). It never sees headers.
	OnServe func(Served)
}

// Faults are shares in [0,1], drawn independently per request for
// provision, terminate, status and list.
type Faults struct {
	Error5xx   float64 // answer 503 {"error":"injected"} without acting
	Timeout    float64 // stall until the client gives up, without acting
	Reset      float64 // close the connection without acting
	LostAnswer float64 // act (launch / terminate), then close the connection
}

// Stats count what the fake saw and did.
type Stats struct {
	Provisions          int `json:"provisions"` // requests received per route, faulted ones included
	Terminates          int `json:"terminates"`
	Statuses            int `json:"statuses"`
	Lists               int `json:"lists"`
	Consoles            int `json:"consoles"`
	Launched            int `json:"launched"`   // instances launched by provision requests
	Duplicates          int `json:"duplicates"` // launches while the workspace already had a live instance
	FaultsInjected      int `json:"faults_injected"`
	MaxLiveForWorkspace int `json:"max_live_for_workspace"` // most live instances one workspace had at a launch
}

// Request is one logged request. Header is a clone and holds credentials:
// keep the log in the test process.
type Request struct {
	Route  string
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	At     time.Time
	// TraceParent is the W3C traceparent header the request carried ("" if
	// none): tests check the CP call joined the job's trace.
	TraceParent string
}

// Served describes one answered (or faulted) request, for logs.
type Served struct {
	Method      string        `json:"method"`
	Route       string        `json:"route"`
	Status      int           `json:"status"` // 0: connection reset or stalled
	Fault       string        `json:"fault,omitempty"`
	WorkspaceID string        `json:"workspace_id,omitempty"`
	InstanceID  string        `json:"instance_id,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
}

// instance is the per-instance record, kept small for 100k-instance benches.
type instance struct {
	id       string
	ws       string
	state    string // as of since; effective state via (*Fake).settle
	launched int64  // unix nanos
	since    int64  // unix nanos of the last state change request
	ip       uint32
}

type idemEntry struct {
	inst *instance // nil while the first request is in flight
}

// Fake is the in-memory CP. All methods are safe for concurrent use.
type Fake struct {
	opts Options
	now  func() time.Time
	done chan struct{} // closed by Close: releases stalled requests

	mu       sync.Mutex
	rng      *rand.Rand
	faults   Faults
	failNext map[string][]scripted
	consoles map[string]string // workspace id → console output (SetConsole)
	hook     func(ws string, inst cp.Instance)
	byID     map[string]*instance
	byWS     map[string][]*instance
	sorted   []*instance // by (launched, id) once !dirty
	dirty    bool
	idem     map[string]*idemEntry
	stats    Stats
	reqs     []Request
	nextIP   uint32
	closed   bool
}

// New builds a Fake that is not listening; serve Handler() or use Start.
func New(opts Options) *Fake {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.MaxRequestLog == 0 {
		opts.MaxRequestLog = 100_000
	}
	return &Fake{
		opts:     opts,
		now:      now,
		done:     make(chan struct{}),
		rng:      rand.New(rand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
		faults:   opts.Faults,
		failNext: map[string][]scripted{},
		byID:     map[string]*instance{},
		byWS:     map[string][]*instance{},
		idem:     map[string]*idemEntry{},
	}
}

// Close releases requests stalled by a Timeout fault. The Fake keeps its
// data and can still be inspected.
func (f *Fake) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
}

// SetFaults changes the fault shares at runtime.
func (f *Fake) SetFaults(fl Faults) {
	f.mu.Lock()
	f.faults = fl
	f.mu.Unlock()
}

// SetConsole makes the console route answer output for workspaceID
// (by default it answers "console for <id>").
func (f *Fake) SetConsole(workspaceID, output string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.consoles == nil {
		f.consoles = map[string]string{}
	}
	f.consoles[workspaceID] = output
}

// FailNext makes the next n requests on route ("provision", "terminate",
// "status", "console", "list") answer status {"error":"injected"} without
// acting. Scripted answers are consumed in order, before random faults.
func (f *Fake) FailNext(route string, status int, n int) {
	f.FailNextRetryAfter(route, status, n, 0)
}

// FailNextRetryAfter is FailNext whose answers carry a Retry-After header
// of after (whole seconds, at least 1) when after > 0.
func (f *Fake) FailNextRetryAfter(route string, status, n int, after time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failNext[route] = append(f.failNext[route], scripted{status: status, retryAfter: after})
	}
}

// scripted is one queued FailNext answer.
type scripted struct {
	status     int
	retryAfter time.Duration
}

// SetProvisionHook sets a function called (blocking, without the Fake's
// lock) inside the provision handler after the instance exists and before
// the answer is sent. nil removes it.
func (f *Fake) SetProvisionHook(h func(ws string, inst cp.Instance)) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// AddInstance seeds an instance (one the database never saw, or a bench
// fleet). It does not count as a launch. A pending instance boots BootTime
// after launchedAt; a shutting-down one terminates ShutdownTime after now.
func (f *Fake) AddInstance(workspaceID, state string, launchedAt time.Time) cp.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.insertLocked(workspaceID, state, launchedAt)
	if state == StateShuttingDown {
		in.since = f.now().UnixNano()
	}
	return f.viewLocked(in, f.now())
}

// Instances returns every instance, terminated ones included, ordered by
// (launched_at, id).
func (f *Fake) Instances() []cp.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sortLocked()
	now := f.now()
	out := make([]cp.Instance, 0, len(f.sorted))
	for _, in := range f.sorted {
		out = append(out, f.viewLocked(in, now))
	}
	return out
}

// Live returns the instances not shutting-down/terminated for workspaceID
// ("" = all workspaces).
func (f *Fake) Live(workspaceID string) []cp.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	src := f.byWS[workspaceID]
	if workspaceID == "" {
		f.sortLocked()
		src = f.sorted
	}
	now := f.now()
	var out []cp.Instance
	for _, in := range src {
		if v := f.viewLocked(in, now); v.Live() {
			out = append(out, v)
		}
	}
	return out
}

// LiveCount is len(Live("")) without the copies.
func (f *Fake) LiveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, now := 0, f.now().UnixNano()
	for _, in := range f.byID {
		if live(f.settle(in, now)) {
			n++
		}
	}
	return n
}

// Stats returns the counters.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Requests returns a copy of the request log.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func live(state string) bool { return state != StateShuttingDown && state != StateTerminated }
