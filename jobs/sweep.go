package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/sweep"
)

// SweepSettings configure the orphan sweep. Zero values mean the
// defaults; Validate checks them against the job settings. It has the
// fields of the sweep's own settings, one for one, so the worker converts
// it without copying field by field (a field added there and not here
// stops the build).
type SweepSettings struct {
	// Interval between periodic sweeps (SWEEP_INTERVAL, default 5m).
	Interval time.Duration
	// Grace: a listed instance younger than this is never condemned
	// (SWEEP_GRACE, default 15m). It must exceed a provision attempt's
	// longest life (see Validate), or an instance whose launch answer is
	// still on its way could be terminated under the job about to record it.
	Grace time.Duration
	// MaxTerminations caps the terminate jobs one sweep enqueues or
	// re-drives (SWEEP_MAX_TERMINATIONS, default 100); the rest are
	// reported and left for the next sweep.
	MaxTerminations int
	// BreakerShare: when CP-side strays exceed this share of the listed
	// live fleet, the sweep acts on none of them and waits for an operator
	// (SWEEP_BREAKER_SHARE, default 0.2). 1 disables the breaker.
	BreakerShare float64
	// BreakerMinStrays is the floor below which the share does not apply
	// (SWEEP_BREAKER_MIN_STRAYS, default 3). Instances of workspaces this
	// database never had are not under it: one of them opens the breaker.
	BreakerMinStrays int
	// ProvisioningDeadline: a provisioning row this old with no live
	// provision job is marked failed (PROVISIONING_DEADLINE, default 1h).
	ProvisioningDeadline time.Duration
	// PageSize of both the CP list and the database pages (max and
	// default 1000).
	PageSize int
	// DryRun makes every sweep report without acting (SWEEP_DRY_RUN).
	DryRun bool
	// Timeout is the sweep job's River timeout. It must stay below
	// River's rescue-after, or the rescuer would start a second sweep
	// beside a slow one. Zero derives it: 2m, or half of RescueAfter
	// when that is shorter.
	Timeout time.Duration
}

// DefaultSweepSettings are the production defaults.
func DefaultSweepSettings() SweepSettings { return SweepSettings(sweep.DefaultSettings()) }

// Validate checks s (zero fields as their defaults) against the job
// settings: the grace must outlive a provision attempt
// (provisionTimeout) and a sweep must end before River's rescuer would
// run it twice (rescueAfter).
func (s SweepSettings) Validate(provisionTimeout, rescueAfter time.Duration) error {
	return sweep.Settings(s).Validate(provisionTimeout, rescueAfter)
}

// OrphanSweepArgs runs one sweep. DryRun reports without acting; Force
// acts on CP-side strays even when the breaker opened.
type OrphanSweepArgs struct {
	DryRun bool `json:"dry_run"`
	Force  bool `json:"force"`
}

// Kind implements river.JobArgs.
func (OrphanSweepArgs) Kind() string { return KindOrphanSweep }

// InsertOpts: no uniqueness here, so an operator's `enqueue sweep` always
// runs; the periodic schedule adds its own by-period uniqueness.
func (OrphanSweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance, MaxAttempts: 3}
}

// RequestSweep inserts one manual sweep now (`enqueue sweep`). It has no
// uniqueness: an operator's sweep is never skipped as a duplicate of the
// periodic one (the advisory lock still keeps them from overlapping).
func RequestSweep(ctx context.Context, client *Client, args OrphanSweepArgs) (*rivertype.JobRow, error) {
	res, err := client.Insert(ctx, args, nil)
	if err != nil {
		return nil, fmt.Errorf("insert orphan sweep: %w", err)
	}
	return res.Job, nil
}
