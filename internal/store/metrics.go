package store

import (
	"context"
	"fmt"

	"github.com/riverqueue/river/rivertype"
)

// QueueStats is what the database says about the queue and the fleet, for
// the gauges an operator alerts on. River keeps no such counts itself, and
// the worker's own counters reset with the process and miss jobs the
// rescuer discarded: only the tables know what is stuck right now.
type QueueStats struct {
	// JobsByKindState counts River jobs per kind and state.
	JobsByKindState map[[2]string]int64
	// OldestAvailableSeconds is, per kind, how long the oldest available
	// job has waited since it became runnable (scheduled_at).
	OldestAvailableSeconds map[string]float64
	// WorkspacesByStatus counts workspace rows per status.
	WorkspacesByStatus map[string]int64
	// OldestStoppingSeconds is how long the oldest stopping row has been
	// stopping; 0 when none is. A stop stuck here is a leak in the making.
	OldestStoppingSeconds float64
	// PausedQueues holds every queue River knows (river_queue) and whether
	// it is paused. River UI can pause a queue with one click, and a paused
	// terminate queue stops every stop without an error anywhere.
	PausedQueues map[string]bool
}

// ReadQueueStats reads every gauge in one snapshot. Each query is a
// GROUP BY over an indexed column, bounded by the number of kinds and
// statuses, so it stays cheap to run every few seconds.
func (st *Store) ReadQueueStats(ctx context.Context, db DB) (QueueStats, error) {
	s := QueueStats{
		JobsByKindState:        map[[2]string]int64{},
		OldestAvailableSeconds: map[string]float64{},
		WorkspacesByStatus:     map[string]int64{},
		PausedQueues:           map[string]bool{},
	}
	if err := s.readJobs(ctx, st.on(db)); err != nil {
		return s, err
	}
	if err := s.readQueues(ctx, st.on(db)); err != nil {
		return s, err
	}
	if err := s.readWorkspaces(ctx, st.on(db)); err != nil {
		return s, err
	}
	return s, nil
}

func (s *QueueStats) readJobs(ctx context.Context, db DB) error {
	rows, err := db.Query(ctx, `
		SELECT kind, state::text, count(*),
			coalesce(extract(epoch FROM now() - min(scheduled_at)), 0)::float8
		FROM {schema}.river_job GROUP BY kind, state`)
	if err != nil {
		return fmt.Errorf("store: read job stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, state string
		var n int64
		var age float64
		if err := rows.Scan(&kind, &state, &n, &age); err != nil {
			return fmt.Errorf("store: scan job stats: %w", err)
		}
		s.JobsByKindState[[2]string{kind, state}] = n
		if state == string(rivertype.JobStateAvailable) {
			s.OldestAvailableSeconds[kind] = max(age, 0)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read job stats: %w", err)
	}
	return nil
}

func (s *QueueStats) readWorkspaces(ctx context.Context, db DB) error {
	rows, err := db.Query(ctx, `
		SELECT status, count(*),
			coalesce(extract(epoch FROM now() - min(status_changed_at)), 0)::float8
		FROM {schema}.workspaces GROUP BY status`)
	if err != nil {
		return fmt.Errorf("store: read workspace stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int64
		var age float64
		if err := rows.Scan(&status, &n, &age); err != nil {
			return fmt.Errorf("store: scan workspace stats: %w", err)
		}
		s.WorkspacesByStatus[status] = n
		if status == StatusStopping {
			s.OldestStoppingSeconds = max(age, 0)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read workspace stats: %w", err)
	}
	return nil
}

func (s *QueueStats) readQueues(ctx context.Context, db DB) error {
	rows, err := db.Query(ctx, `SELECT name, paused_at IS NOT NULL FROM {schema}.river_queue`)
	if err != nil {
		return fmt.Errorf("store: read queues: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var paused bool
		if err := rows.Scan(&name, &paused); err != nil {
			return fmt.Errorf("store: scan queues: %w", err)
		}
		s.PausedQueues[name] = paused
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read queues: %w", err)
	}
	return nil
}
