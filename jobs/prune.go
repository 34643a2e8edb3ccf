package jobs

import (
	"errors"
	"time"
)

// PruneSettings configure the periodic timeline pruner: a River periodic
// job, inserted by the leader only, that deletes workspace timeline
// events older than Retention in batches of BatchSize until a batch
// comes back short. Zero fields mean the defaults (Or).
type PruneSettings struct {
	// Interval between prunes (EVENT_PRUNE_INTERVAL, default 1h).
	Interval time.Duration
	// BatchSize bounds one DELETE, so a large backlog never holds a long
	// lock (EVENT_PRUNE_BATCH_SIZE, default 10000).
	BatchSize int
	// Retention is how long timeline events are kept (EVENT_RETENTION,
	// default 90 days).
	Retention time.Duration
}

// Prune defaults: the values of the hand-rolled hourly loop this replaced.
const (
	DefaultPruneInterval  = time.Hour
	DefaultPruneBatchSize = 10000
	DefaultEventRetention = 90 * 24 * time.Hour
)

// DefaultPruneSettings are the production defaults.
func DefaultPruneSettings() PruneSettings {
	return PruneSettings{Interval: DefaultPruneInterval, BatchSize: DefaultPruneBatchSize, Retention: DefaultEventRetention}
}

// Or fills s's zero fields from fallback, field by field, so a host that
// sets only Retention keeps the default interval and batch size.
func (s PruneSettings) Or(fallback PruneSettings) PruneSettings {
	if s.Interval == 0 {
		s.Interval = fallback.Interval
	}
	if s.BatchSize == 0 {
		s.BatchSize = fallback.BatchSize
	}
	if s.Retention == 0 {
		s.Retention = fallback.Retention
	}
	return s
}

// Validate refuses settings the pruner cannot run with. A negative
// retention would delete every event, including the ones just written.
func (s PruneSettings) Validate() error {
	switch {
	case s.Interval <= 0:
		return errors.New("prune interval must be positive (EVENT_PRUNE_INTERVAL)")
	case s.BatchSize <= 0:
		return errors.New("prune batch size must be positive (EVENT_PRUNE_BATCH_SIZE)")
	case s.Retention <= 0:
		return errors.New("event retention must be positive (EVENT_RETENTION)")
	}
	return nil
}
