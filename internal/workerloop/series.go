package workerloop

import (
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/sweep"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Label values the worker's counters take. A counter series is born the
// first time it is incremented, and Prometheus' increase() and rate() need
// two samples: a series born at 1 shows no increase at all. So the first
// stuck stop in a process never fired TerminateStuck, and the first open
// breaker never fired SweepBreakerOpen. ZeroSeries creates them at 0 when
// the worker starts (deploy/prometheus/alerts.yml relies on it, and its
// test scrapes a fresh worker for every name the rules use).
var (
	seriesKinds    = riverjob.Kinds()
	seriesOutcomes = []string{"completed", "retried", "snoozed", "cancelled", "discarded"}
	seriesRoutes   = []string{"provision", "terminate", "status", "console", "list"}
	seriesCodes    = []string{"2xx", "4xx", "5xx", "error"}
	seriesResults  = []string{"ok", "partial", "skipped", "breaker_open", "cp_unknown", "cp_unsupported", "error"}
	seriesClasses  = []string{sweep.ClassUnknownWorkspace, sweep.ClassDuplicate, sweep.ClassUnrecorded,
		sweep.ClassStaleInstanceOnRow, sweep.ClassStoppingWithoutJob, sweep.ClassStoppingDiscarded,
		sweep.ClassStoppingCancelled, sweep.ClassStuckProvisioning, sweep.ClassEnvHookDiscarded, sweep.ClassEnvHookGaveUp,
		sweep.ClassInstanceTerminateDiscarded, sweep.ClassInstanceTerminateCancelled, sweep.ClassInstanceTerminateNoRow}
)

// ZeroSeries creates every labelled counter series the worker can emit, at 0.
func ZeroSeries(m *obs.Metrics) {
	for _, k := range seriesKinds {
		for _, o := range seriesOutcomes {
			m.JobsTotal.WithLabelValues(k, o)
		}
	}
	for _, r := range seriesRoutes {
		for _, c := range seriesCodes {
			m.CPLatency.WithLabelValues(r, c)
			m.CPRequests.WithLabelValues(r, c)
		}
	}
	for _, k := range []string{jobs.KindTerminate, jobs.KindInstanceTerminate} {
		m.TerminateStuck.WithLabelValues(k)
	}
	for _, r := range seriesResults {
		m.SweepsTotal.WithLabelValues(r)
	}
	for _, c := range seriesClasses {
		m.OrphansFound.WithLabelValues(c)
	}
}
