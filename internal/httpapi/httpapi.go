// Package httpapi is the worker's HTTP surface: liveness and readiness
// probes, Prometheus metrics, and River UI behind basic auth (River UI
// has no authentication of its own, and it can retry and cancel jobs).
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// UIPrefix is where River UI is mounted. The trailing slash matters:
// riverui routes its API and assets under it.
const UIPrefix = "/riverui/"

// Config wires the handler.
type Config struct {
	Pool     *pgxpool.Pool
	River    *river.Client[pgx.Tx]
	Registry *prometheus.Registry
	User     string // basic auth; both empty: no auth (loopback only, checked by the caller)
	Pass     string
	Logger   *slog.Logger
}

// Server is the worker's HTTP handler.
type Server struct {
	mux     *http.ServeMux
	handler http.Handler // mux behind the guards every request passes
	ui      *riverui.Handler
	cfg     Config
	started func() bool
}

// SetStarted tells /readyz how to know the River client is working.
func (s *Server) SetStarted(fn func() bool) { s.started = fn }

// ErrNoCredentials is returned when River UI would be served without
// credentials on an address other than loopback.
var ErrNoCredentials = errors.New("RIVER_BASIC_AUTH_USER and RIVER_BASIC_AUTH_PASS are required when WORKER_HTTP_ADDR is not a loopback address")

// New builds the handler; call Start before serving so River UI's
// background services run.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		// riverui refuses a nil logger; tests and tools need no River UI logs.
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(cfg.River, nil),
		Logger:    cfg.Logger,
		Prefix:    strings.TrimSuffix(UIPrefix, "/"),
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	s := &Server{mux: http.NewServeMux(), ui: ui, cfg: cfg}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	guarded := s.basicAuth(uiGuard(ui))
	s.mux.Handle(UIPrefix, guarded)
	s.mux.Handle("/riverui", guarded)
	s.handler = noFraming(s.mux)
	if cfg.User == "" && cfg.Pass == "" {
		s.handler = loopbackHostOnly(s.handler)
	}
	return s, nil
}

// Start runs River UI's background services until ctx ends.
func (s *Server) Start(ctx context.Context) error { return s.ui.Start(ctx) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// ready answers 200 once the database answers and the River client runs.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var one int
	if err := s.cfg.Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	if s.started != nil && !s.started() {
		http.Error(w, "river client not started", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// basicAuth guards next. Both values are hashed before the constant-time
// compare so neither their content nor their length leaks through timing.
func (s *Server) basicAuth(next http.Handler) http.Handler {
	if s.cfg.User == "" && s.cfg.Pass == "" {
		return next
	}
	wantUser := sha256.Sum256([]byte(s.cfg.User))
	wantPass := sha256.Sum256([]byte(s.cfg.Pass))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="River UI", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
