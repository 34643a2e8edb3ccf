// Package provisioner is the worker as a library: a host process builds
// it from a Config, starts it beside its own HTTP server, mounts its
// handlers (River UI behind basic auth, /metrics, /healthz, /readyz) on
// its own mux if it wants them, and stops it on shutdown. cmd/worker is a
// thin shell over this package, so both forms keep the same guarantees.
package provisioner

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/jobs"
)

// CPConfig is how the worker reaches the control plane.
type CPConfig struct {
	BaseURL      string
	OrgID        string
	SharedSecret string
	AdminToken   string
	AdminAPIKey  string
	Timeout      time.Duration
}

// Config is everything the embedded worker reads. FromEnv fills it from
// the same variables as cmd/worker.
type Config struct {
	DatabaseURL     string
	CP              CPConfig
	Settings        jobs.Settings // Settings.Schema: where its tables live
	Options         jobs.Options
	Sweep           jobs.SweepSettings
	SweepEnabled    bool
	UIUser, UIPass  string
	ShutdownTimeout time.Duration
	EventRetention  time.Duration
	Logger          zerolog.Logger
	// Env and OnOutcome are the host's hooks; both optional.
	Env       jobs.EnvFunc
	OnOutcome jobs.OutcomeFunc
}

// FromEnv reads a Config from the worker's environment variables.
func FromEnv(getenv func(string) string) (Config, error) {
	return Config{}, errors.New("provisioner: not implemented yet")
}

// Worker is a running (or ready to run) provisioning worker.
type Worker struct{}

// New connects and checks everything it can before any job runs.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	return nil, errors.New("provisioner: not implemented yet")
}

// Start starts working jobs (and, when enabled, the periodic sweep).
func (w *Worker) Start(ctx context.Context) error {
	return errors.New("provisioner: not implemented yet")
}

// Stop stops fetching, lets running jobs finish until ctx ends, then
// cancels the rest (River requeues them without spending an attempt),
// and closes the pool.
func (w *Worker) Stop(ctx context.Context) error {
	return errors.New("provisioner: not implemented yet")
}

// Handler serves River UI (behind basic auth when set), /metrics,
// /healthz and /readyz, for the host to mount on its own mux.
func (w *Worker) Handler() http.Handler { return http.NotFoundHandler() }
