package sweep

import (
	"errors"
	"fmt"
	"time"
)

// Settings configure the sweep. Zero values mean the defaults.
type Settings struct {
	// Interval between periodic sweeps (SWEEP_INTERVAL).
	Interval time.Duration
	// Grace: a listed instance younger than this is never condemned
	// (SWEEP_GRACE). It must exceed a provision attempt's longest life
	// (see Validate), or an instance whose launch answer is still on its
	// way could be terminated under the job about to record it.
	Grace time.Duration
	// MaxTerminations caps the terminate jobs one sweep enqueues or
	// re-drives (SWEEP_MAX_TERMINATIONS); the rest are reported and left
	// for the next sweep, so one wrong sweep cannot take the fleet down.
	MaxTerminations int
	// BreakerShare: when CP-side strays exceed this share of the listed
	// live fleet, the sweep acts on none of them and waits for an operator
	// (SWEEP_BREAKER_SHARE). A restored database, a second deployment on
	// the same org id, or the first deploy onto an existing fleet all look
	// like "everything is an orphan". 1 disables the breaker.
	BreakerShare float64
	// BreakerMinStrays is the floor below which the share does not apply
	// (SWEEP_BREAKER_MIN_STRAYS): in a fleet of four, one stray is over
	// 20 %, and the breaker held it until an operator forced a sweep.
	// Instances of workspaces this database never had are not under it:
	// one of them opens the breaker (see decideCP).
	BreakerMinStrays int
	// ProvisioningDeadline: a provisioning row this old with no live
	// provision job is marked failed (PROVISIONING_DEADLINE).
	ProvisioningDeadline time.Duration
	// PageSize of both the CP list and the database pages (max 1000).
	PageSize int
	// DryRun makes every sweep report without acting (SWEEP_DRY_RUN).
	DryRun bool
	// Timeout is the sweep job's River timeout. It must stay below
	// River's rescue-after, or the rescuer would start a second sweep
	// beside a slow one. Zero derives it (see ForRescueAfter).
	Timeout time.Duration
}

// Defaults.
const (
	DefaultInterval             = 5 * time.Minute
	DefaultGrace                = 15 * time.Minute
	DefaultMaxTerminations      = 100
	DefaultBreakerShare         = 0.2
	DefaultBreakerMinStrays     = 3
	DefaultProvisioningDeadline = time.Hour
	DefaultPageSize             = 1000
	DefaultTimeout              = 2 * time.Minute
	maxPageSize                 = 1000
)

// DefaultSettings are the production defaults.
func DefaultSettings() Settings {
	return Settings{
		Interval: DefaultInterval, Grace: DefaultGrace, MaxTerminations: DefaultMaxTerminations,
		BreakerShare: DefaultBreakerShare, BreakerMinStrays: DefaultBreakerMinStrays,
		ProvisioningDeadline: DefaultProvisioningDeadline,
		PageSize:             DefaultPageSize,
	}
}

// WithDefaults fills zero fields from DefaultSettings.
func (s Settings) WithDefaults() Settings {
	d := DefaultSettings()
	fill := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&s.Interval, d.Interval)
	fill(&s.Grace, d.Grace)
	fill(&s.ProvisioningDeadline, d.ProvisioningDeadline)
	if s.MaxTerminations <= 0 {
		s.MaxTerminations = d.MaxTerminations
	}
	if s.BreakerShare <= 0 {
		s.BreakerShare = d.BreakerShare
	}
	if s.BreakerMinStrays <= 0 {
		s.BreakerMinStrays = d.BreakerMinStrays
	}
	if s.PageSize <= 0 {
		s.PageSize = d.PageSize
	}
	return s
}

// InFlightAttempts is how many attempts of one provision can be running
// at once: the one River sees, and one whose worker was presumed dead and
// rescued while its CP call was still under way.
const InFlightAttempts = 2

// Validate checks the settings against the provision job's timeout and
// River's rescue-after (zero values are checked as their defaults).
func (s Settings) Validate(provisionTimeout, rescueAfter time.Duration) error {
	s = s.ForRescueAfter(rescueAfter).WithDefaults()
	var errs []error
	if minGrace := provisionTimeout * InFlightAttempts; s.Grace <= minGrace {
		errs = append(errs, fmt.Errorf("sweep grace %s must exceed the provision timeout × %d in-flight attempts (%s)",
			s.Grace, InFlightAttempts, minGrace))
	}
	if s.BreakerShare > 1 {
		errs = append(errs, fmt.Errorf("sweep breaker share %g must be in (0, 1]", s.BreakerShare))
	}
	if s.PageSize > maxPageSize {
		errs = append(errs, fmt.Errorf("sweep page size %d must be at most %d", s.PageSize, maxPageSize))
	}
	if rescueAfter > 0 && s.Timeout >= rescueAfter {
		errs = append(errs, fmt.Errorf("sweep timeout %s must be below the rescue-after %s", s.Timeout, rescueAfter))
	}
	if s.ProvisioningDeadline <= provisionTimeout {
		errs = append(errs, fmt.Errorf("provisioning deadline %s must exceed the provision timeout %s",
			s.ProvisioningDeadline, provisionTimeout))
	}
	return errors.Join(errs...)
}

// ForRescueAfter derives a zero Timeout: DefaultTimeout, but below half
// the rescue-after of a fast-retry setup (tests and chaos runs rescue in
// seconds).
func (s Settings) ForRescueAfter(rescueAfter time.Duration) Settings {
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
		if rescueAfter > 0 {
			s.Timeout = min(DefaultTimeout, rescueAfter/2)
		}
	}
	return s
}
