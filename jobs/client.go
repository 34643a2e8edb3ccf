package jobs

import (
	"io"
	"log/slog"
	"time"
)

// Options configure the worker's River client.
type Options struct {
	ProvisionWorkers int // concurrent provisions (default 20)
	TerminateWorkers int // concurrent stops, reserved for them (default 20)
	// FetchCooldown and FetchPollInterval trade pickup latency for load:
	// River's defaults (100 ms, 1 s) give p50 ~50 ms; 5 ms / 20 ms give
	// ~13 ms at more queries per second.
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// RescueAfter is how long a job whose worker died stays running before
	// River's rescuer retries it; it must exceed the job timeouts.
	RescueAfter time.Duration
	// DiscardedRetention keeps dead jobs long enough for an operator to
	// re-run them (River's default deletes them after 7 days).
	DiscardedRetention time.Duration
	// Sweep configures the periodic orphan sweep; nil disables it.
	Sweep *SweepSettings
	// Prune configures the periodic timeline pruner; nil disables it.
	Prune *PruneSettings
	// Logger receives River's own logs.
	Logger *slog.Logger
	// ID names the client (River UI shows it); default River's.
	ID string
}

// WithDefaults fills o's zero fields: 20 provision and 20 terminate
// workers, RescueAfter one minute past the largest job timeout of s,
// 30 days' DiscardedRetention, a logger that drops River's info lines.
// The worker runs with these; MaxClockSkew is computed from them.
func (o Options) WithDefaults(s Settings) Options {
	if o.ProvisionWorkers <= 0 {
		o.ProvisionWorkers = 20
	}
	if o.TerminateWorkers <= 0 {
		o.TerminateWorkers = 20
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = max(s.ProvisionTimeout, s.TerminateTimeout) + time.Minute
	}
	if o.DiscardedRetention <= 0 {
		o.DiscardedRetention = 30 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	return o
}

// quietLogger drops River's info chatter; warnings and errors still show.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}
