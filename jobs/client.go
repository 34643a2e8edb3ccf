package jobs

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// The defaults of Options. WithDefaults applies the first three; the
// worker's settings (internal/workerenv: `worker --help`, the README
// table, provisioner.FromEnv) and provisioner.New take theirs from here,
// so the command, the embedded worker and a bare Options agree.
const (
	DefaultProvisionWorkers   = 20
	DefaultTerminateWorkers   = 20
	DefaultDiscardedRetention = 30 * 24 * time.Hour
	// DefaultFetchCooldown is the command's and provisioner's, not
	// River's 100 ms (which WithDefaults leaves a zero FetchCooldown to):
	// pickup in ~13 ms rather than ~50 ms, at more queries. Insert
	// clients use it too (see insertConfig).
	DefaultFetchCooldown = 5 * time.Millisecond
	// DefaultFetchPollInterval is River's own, stated for the command's
	// setting.
	DefaultFetchPollInterval = time.Second
)

// Options configure the worker's River client.
type Options struct {
	ProvisionWorkers int // concurrent provisions (DefaultProvisionWorkers)
	TerminateWorkers int // concurrent stops, reserved for them (DefaultTerminateWorkers)
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

// WithDefaults fills o's zero fields: DefaultProvisionWorkers and
// DefaultTerminateWorkers, RescueAfter one minute past the largest job
// timeout of s (DefaultRescueAfter), DefaultDiscardedRetention, a logger
// that drops River's info lines. The worker runs with these;
// MaxClockSkew is computed from them.
func (o Options) WithDefaults(s Settings) Options {
	if o.ProvisionWorkers <= 0 {
		o.ProvisionWorkers = DefaultProvisionWorkers
	}
	if o.TerminateWorkers <= 0 {
		o.TerminateWorkers = DefaultTerminateWorkers
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = DefaultRescueAfter(s)
	}
	if o.DiscardedRetention <= 0 {
		o.DiscardedRetention = DefaultDiscardedRetention
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	return o
}

// DefaultRescueAfter is RescueAfter's default under s: one minute past
// its largest job timeout (3m under DefaultSettings, RESCUE_AFTER's
// default), so a job cut off at its timeout is never rescued while its
// worker may still be finishing it.
func DefaultRescueAfter(s Settings) time.Duration {
	return max(s.ProvisionTimeout, s.TerminateTimeout) + time.Minute
}

// CheckRescueAfter refuses a rescueAfter that does not exceed the largest
// job timeout of s (zero fields as their defaults): River's rescuer would
// start a second attempt while the first may still be calling the CP.
// The worker's settings check (RESCUE_AFTER, exit 2) and the worker
// client both ask this, so they cannot disagree.
func CheckRescueAfter(rescueAfter time.Duration, s Settings) error {
	s = s.withDefaults()
	if rescueAfter <= max(s.ProvisionTimeout, s.TerminateTimeout) {
		return fmt.Errorf("RESCUE_AFTER (%s) must exceed PROVISION_TIMEOUT and TERMINATE_TIMEOUT", rescueAfter)
	}
	return nil
}

// quietLogger drops River's info chatter; warnings and errors still show.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}
