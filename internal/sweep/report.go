package sweep

import (
	"encoding/json"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/obs"
)

// maxFoundLines bounds the orphan.found lines of one sweep: a restored
// database can make every instance look like an orphan, and 100,000 log
// lines would bury the one that says why (sweep.breaker_open).
const maxFoundLines = 20

// found counts one orphan and logs it while the line budget lasts.
func (r *run) found(class, workspaceID, instanceID string, extra map[string]any) {
	r.res.Orphans[class]++
	if r.logged >= maxFoundLines {
		return
	}
	r.logged++
	extra["class"] = class
	extra["dry_run"] = r.o.DryRun
	obs.Event(r.d.Log, zerolog.WarnLevel, obs.EvOrphanFound, obs.Fields{
		WorkspaceID: workspaceID, InstanceID: instanceID, Extra: extra})
}

// report writes sweep.done and the metrics.
func (r *run) report(err error) {
	outcome := r.outcome(err)
	fields := map[string]any{}
	if b, merr := json.Marshal(r.res); merr == nil {
		_ = json.Unmarshal(b, &fields)
	}
	fields["result"] = outcome
	if n := r.orphanCount() - r.logged; n > 0 {
		fields["orphan_lines_suppressed"] = n
	}
	level := zerolog.InfoLevel
	if err != nil || r.firstErr != nil {
		level = zerolog.ErrorLevel
		fields["error"] = errorText(err, r.firstErr)
	}
	obs.Event(r.d.Log, level, obs.EvSweepDone, obs.Fields{Extra: fields})
	m := r.d.Metrics
	if m == nil {
		return
	}
	for class, n := range r.res.Orphans {
		m.OrphansFound.WithLabelValues(class).Add(float64(n))
	}
	m.OrphansEnqueued.Add(float64(r.res.Enqueued + r.res.Retried))
	m.SweepsTotal.WithLabelValues(outcome).Inc()
	m.SweepDuration.Observe(time.Duration(r.res.DurationMS * int64(time.Millisecond)).Seconds())
	if r.res.CPSide == CPOK || r.res.CPSide == CPBreakerOpen {
		// The list was read whole (the breaker is a decision about it).
		m.SweepCPSeen.SetToCurrentTime()
		m.SweepUnreadable.Set(float64(r.res.Unreadable))
	}
}

// outcome is the provisioner_sweeps_total result label.
func (r *run) outcome(err error) string {
	switch {
	case err != nil:
		return "error"
	case r.res.Skipped != "":
		return "skipped"
	case r.firstErr != nil:
		return "partial"
	case r.res.CPSide == CPBreakerOpen:
		return "breaker_open"
	case r.res.CPSide == CPUnknown:
		return "cp_unknown"
	case r.res.CPSide == CPUnsupported:
		return "cp_unsupported"
	}
	return "ok"
}

func (r *run) orphanCount() int {
	n := 0
	for _, c := range r.res.Orphans {
		n += c
	}
	return n
}

func errorText(errs ...error) string {
	for _, e := range errs {
		if e != nil {
			return e.Error()
		}
	}
	return ""
}
