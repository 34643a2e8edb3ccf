// Package workerloop holds the worker's background loops beside River's
// client: job outcome counters and the clock-skew watch (the timeline
// pruner is a River periodic job in internal/worker, so one replica runs
// it, not each). provisioner runs them; they are a package of their own
// so the metrics test can drive one without a whole worker.
package workerloop

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/jobs"
)

// DBStatsInterval is how often each replica reads the database gauges
// (jobs by state, oldest available, workspaces by status): fresh enough
// for a 1-minute alert, cheap enough for every replica to do.
const DBStatsInterval = 15 * time.Second

// EvClockSkew is logged while the clock skew is beyond the safe limit.
const EvClockSkew = "worker.clock_skew"

// WatchJobs turns River's job events into outcome counters, and logs every
// discarded job at error level: River's rescuer can discard a job without
// the worker ever logging it.
// It subscribes before returning, so no event between this call and the
// client's start is missed. done closes when the loop has returned.
func WatchJobs(ctx context.Context, client *jobs.Client, log zerolog.Logger, m *obs.Metrics) (done <-chan struct{}) {
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed,
		river.EventKindJobSnoozed, river.EventKindJobCancelled)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer cancel()
		countJobs(ctx, events, log, m)
	}()
	return ch
}

func countJobs(ctx context.Context, events <-chan *river.Event, log zerolog.Logger, m *obs.Metrics) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			outcome := jobOutcome(ev)
			m.JobsTotal.WithLabelValues(ev.Job.Kind, outcome).Inc()
			if outcome == "discarded" {
				ws, inst := JobIDs(ev.Job)
				obs.Event(log, zerolog.ErrorLevel, obs.EvJobDiscarded, obs.Fields{WorkspaceID: ws, InstanceID: inst,
					JobID: ev.Job.ID, Attempt: ev.Job.Attempt, Extra: map[string]any{"kind": ev.Job.Kind,
						"hint": "re-run it from River UI or `enqueue retry --job-id`"}})
			}
		}
	}
}

func jobOutcome(ev *river.Event) string {
	switch ev.Kind {
	case river.EventKindJobCompleted:
		return "completed"
	case river.EventKindJobSnoozed:
		return "snoozed"
	case river.EventKindJobCancelled:
		return "cancelled"
	}
	if ev.Job.State == rivertype.JobStateDiscarded {
		return "discarded"
	}
	return "retried"
}

// JobIDs reads the ids a job's args carry (invariant "ids-only args",
// docs/design.md), so log
// lines about a job can be joined with the workspace's other lines.
func JobIDs(row *rivertype.JobRow) (workspaceID, instanceID string) {
	var a struct {
		WorkspaceID string `json:"workspace_id"`
		InstanceID  string `json:"instance_id"`
	}
	_ = json.Unmarshal(row.EncodedArgs, &a)
	return a.WorkspaceID, a.InstanceID
}

// WatchClock measures the clock skew every DBStatsInterval after the
// start-up check: NTP can stop, and a leader drifting ahead of Postgres
// rescues attempts that are still running.
func WatchClock(ctx context.Context, pool *pgxpool.Pool, opts jobs.Options, s jobs.Settings, log zerolog.Logger, m *obs.Metrics) {
	tick := time.NewTicker(DBStatsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		skew, err := jobs.CheckClockSkew(ctx, pool, opts, s, time.Now)
		if err == nil || errors.Is(err, jobs.ErrClockSkew) {
			m.ClockSkew.Set(skew.Seconds())
		}
		if errors.Is(err, jobs.ErrClockSkew) {
			log.Error().Str("evt", EvClockSkew).Err(err).Msg("clock skew: River may rescue attempts that are still running")
		}
	}
}
