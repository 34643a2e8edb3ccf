package obs

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the worker's own series. River exposes no queue metrics, so
// the worker counts job outcomes and CP calls itself; database-side gauges
// (jobs by state, oldest available, workspaces by status) are read on an
// interval by a collector registered beside these.
type Metrics struct {
	Registry          *prometheus.Registry
	JobsTotal         *prometheus.CounterVec   // kind, outcome
	CPRequests        *prometheus.CounterVec   // route, code
	CPLatency         *prometheus.HistogramVec // route, code
	TerminateRetries  prometheus.Counter
	TerminateStuck    *prometheus.CounterVec // kind
	OrphansFound      *prometheus.CounterVec // class
	OrphansEnqueued   prometheus.Counter
	OrphansTerminated prometheus.Counter
	SweepsTotal       *prometheus.CounterVec // result
	SweepDuration     prometheus.Histogram
	// SweepCPSeen is when a sweep last read the whole CP list: while it
	// lags, no stray anywhere is being reclaimed.
	SweepCPSeen prometheus.Gauge
	// SweepUnreadable is how many list entries the last sweep could not
	// read (and so left alone).
	SweepUnreadable prometheus.Gauge
	// ClockSkew is Postgres's clock minus this process's, measured on an
	// interval: River's rescuer compares the two (see jobs.MaxClockSkew).
	ClockSkew prometheus.Gauge
	// HookFailures counts failed calls of the host's hooks (hook: env,
	// outcome). An env hook's error text is never recorded anywhere (it
	// may name a secret), so this count is how a failing one shows.
	HookFailures *prometheus.CounterVec
}

// NewMetrics registers the series on a fresh registry (plus Go and process
// collectors), so tests can build many without clashing.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		JobsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_jobs_total", Help: "Jobs worked, by kind and outcome (completed, retried, snoozed, cancelled, discarded).",
		}, []string{"kind", "outcome"}),
		CPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_cp_requests_total", Help: "Control-plane requests by route and status class (2xx, 4xx, 5xx, error).",
		}, []string{"route", "code"}),
		CPLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "provisioner_cp_request_duration_seconds", Help: "Control-plane request latency by route and status class (2xx, 4xx, 5xx, error).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"route", "code"}),
		TerminateRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisioner_terminate_retries_total", Help: "Terminate attempts that failed and will be retried.",
		}),
		TerminateStuck: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_terminate_stuck_total",
			Help: "Terminate jobs that failed the same way TERMINATE_STUCK_AFTER attempts in a row (one per streak; they keep retrying).",
		}, []string{"kind"}),
		OrphansFound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_orphans_found_total", Help: "Orphans found by the sweep, by class.",
		}, []string{"class"}),
		OrphansEnqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisioner_orphans_enqueued_total", Help: "Terminate jobs the sweep enqueued or re-drove.",
		}),
		OrphansTerminated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisioner_orphans_terminated_total", Help: "Stray instances terminated by instance_terminate jobs.",
		}),
		SweepsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_sweeps_total", Help: "Orphan sweeps by result (ok, partial, skipped, breaker_open, cp_unknown, cp_unsupported, error).",
		}, []string{"result"}),
		SweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "provisioner_sweep_duration_seconds", Help: "Orphan sweep duration.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}),
		SweepCPSeen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisioner_sweep_cp_seen_timestamp_seconds",
			Help: "Unix time a sweep in this process last read the whole CP list (0: not yet).",
		}),
		SweepUnreadable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisioner_sweep_unreadable_instances",
			Help: "CP list entries the last sweep in this process could not read and left alone.",
		}),
		ClockSkew: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisioner_db_clock_skew_seconds", Help: "Postgres's clock minus this worker's (positive: the database is ahead).",
		}),
		HookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_hook_failures_total", Help: "Failed calls of the host's hooks, by hook (env, outcome); each is retried.",
		}, []string{"hook"}),
	}
	// Born at zero, so the first failure shows in increase().
	for _, h := range []string{HookEnv, HookOutcome} {
		m.HookFailures.WithLabelValues(h)
	}
	r.MustRegister(m.JobsTotal, m.CPRequests, m.CPLatency, m.TerminateRetries, m.TerminateStuck, m.OrphansFound,
		m.OrphansEnqueued, m.OrphansTerminated, m.SweepsTotal, m.SweepDuration, m.SweepCPSeen, m.SweepUnreadable, m.ClockSkew, m.HookFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// The hook label values of HookFailures.
const (
	HookEnv     = "env"
	HookOutcome = "outcome"
)

// HookFailed counts one failed hook call; m may be nil.
func (m *Metrics) HookFailed(hook string) {
	if m != nil {
		m.HookFailures.WithLabelValues(hook).Inc()
	}
}

// ObserveCP is the cp.Config.OnRequest hook: status 0 means no answer.
func (m *Metrics) ObserveCP(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	// Latency by status class too: a CP that times out (error) or fails
	// fast (5xx) looks nothing like one that answers, and a p99 over all
	// of them hides which.
	code := codeClass(status)
	m.CPRequests.WithLabelValues(route, code).Inc()
	m.CPLatency.WithLabelValues(route, code).Observe(d.Seconds())
}

func codeClass(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}
