package app

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/internal/workerloop"
	"github.com/molecule-ai/provision-worker/jobs"
)

// scrape reads /metrics over HTTP, as Prometheus does.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value finds the sample of name whose labels include want; a missing
// series fails the test (an alert on it would never fire).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "series %s missing", name)
	for _, m := range fam.GetMetric() {
		if !labelsMatch(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	require.Failf(t, "series missing", "%s%v", name, want)
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

func sum(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "series %s missing", name)
	var s float64
	for _, m := range fam.GetMetric() {
		s += m.GetCounter().GetValue()
	}
	return s
}

type lbl = map[string]string

// The worker's observability wiring (workerloop.WatchJobs, the CP hook, the database
// collector, the HTTP handler) after a provision, a stop that failed once
// and then worked, a sweep that found a stray, and a stop that died.
func TestMetrics_ScrapeAfterProvisionFailingTerminateAndSweep(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true, Settings: jobs.Settings{TerminateMaxAttempts: 2}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workerloop.WatchJobs(ctx, env.Worker, zerolog.New(env.Logs), env.Metrics)
	dbStats := obs.NewDBCollector(store.MustFor(""), env.Pool, jobs.KindProvision, jobs.KindTerminate, jobs.KindInstanceTerminate, jobs.KindOrphanSweep)
	env.Metrics.Registry.MustRegister(dbStats)
	srv, err := httpapi.New(httpapi.Config{Pool: env.Pool, River: env.Worker, Registry: env.Metrics.Registry, User: "u", Pass: "p"})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	env.Start()

	a, b := uuid.NewString(), uuid.NewString()
	env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: a})
	env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: b})

	env.CP.FailNext(cpfake.RouteTerminate, 500, 1) // a: one failure, then stopped
	env.Terminate(a)
	env.WaitStatus(a, store.StatusStopped)

	env.CP.AddInstance(uuid.NewString(), cpfake.StateRunning, time.Now().Add(-time.Hour)) // a stray
	res, err := worker.RunSweep(ctx, env.Deps, env.Insert,
		jobs.SweepSettings{Grace: time.Minute, BreakerShare: 1, ProvisioningDeadline: time.Hour}, jobs.OrphanSweepArgs{})
	require.NoError(t, err)
	require.Equal(t, 1, res.Enqueued)
	env.WaitFor("the stray terminated", func() bool { return len(env.CP.Live("")) == 1 })

	env.CP.FailNext(cpfake.RouteTerminate, 500, 2) // b: its two attempts fail, the stop dies
	stopB := env.Terminate(b)
	env.WaitFor("b's terminate discarded", func() bool {
		job, err := env.Insert.JobGet(ctx, stopB.Job.ID)
		require.NoError(t, err)
		return job.State == "discarded"
	})

	// A provision waiting with no worker running ages as the oldest available.
	stopCtx, stopCancel := context.WithTimeout(ctx, 10*time.Second)
	defer stopCancel()
	require.NoError(t, env.Worker.Stop(stopCtx))
	env.Provision(jobs.ProvisionRequest{WorkspaceID: uuid.NewString()})
	require.NoError(t, dbStats.Refresh(ctx))

	m := scrape(t, hs.URL)
	// Job outcomes, counted from River's events.
	require.Equal(t, 2.0, value(t, m, "provisioner_jobs_total", lbl{"kind": jobs.KindProvision, "outcome": "completed"}))
	require.Equal(t, 2.0, value(t, m, "provisioner_jobs_total", lbl{"kind": jobs.KindTerminate, "outcome": "retried"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_jobs_total", lbl{"kind": jobs.KindTerminate, "outcome": "completed"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_jobs_total", lbl{"kind": jobs.KindTerminate, "outcome": "discarded"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_jobs_total", lbl{"kind": jobs.KindInstanceTerminate, "outcome": "completed"}))
	// Failed terminate attempts that will be retried; the last (discarded)
	// one is not a retry.
	require.Equal(t, 2.0, value(t, m, "provisioner_terminate_retries_total", nil))
	// CP calls by route and status class, with latency.
	require.Equal(t, 2.0, value(t, m, "provisioner_cp_requests_total", lbl{"route": "provision", "code": "2xx"}))
	require.Equal(t, 3.0, value(t, m, "provisioner_cp_requests_total", lbl{"route": "terminate", "code": "5xx"}))
	require.Equal(t, 2.0, value(t, m, "provisioner_cp_requests_total", lbl{"route": "terminate", "code": "2xx"}))
	require.GreaterOrEqual(t, value(t, m, "provisioner_cp_requests_total", lbl{"route": "list", "code": "2xx"}), 1.0)
	require.Equal(t, 3.0, value(t, m, "provisioner_cp_request_duration_seconds", lbl{"route": "terminate", "code": "5xx"}))
	require.Equal(t, 2.0, value(t, m, "provisioner_cp_request_duration_seconds", lbl{"route": "terminate", "code": "2xx"}))
	// The sweep.
	require.Equal(t, 1.0, sum(t, m, "provisioner_orphans_found_total"))
	require.Equal(t, 1.0, value(t, m, "provisioner_orphans_terminated_total", nil))
	require.Equal(t, 1.0, value(t, m, "provisioner_sweeps_total", lbl{"result": "ok"}))
	// Database gauges.
	require.Equal(t, 1.0, value(t, m, "provisioner_db_stats_up", nil))
	require.Equal(t, 1.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindTerminate, "state": "discarded"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindTerminate, "state": "completed"}))
	require.Equal(t, 2.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindProvision, "state": "completed"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindProvision, "state": "available"}))
	require.Equal(t, 0.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindOrphanSweep, "state": "discarded"}),
		"zero series exist, so an alert on them can fire")
	require.Greater(t, value(t, m, "provisioner_oldest_available_job_age_seconds", lbl{"kind": jobs.KindProvision}), 0.0)
	require.Equal(t, 0.0, value(t, m, "provisioner_oldest_available_job_age_seconds", lbl{"kind": jobs.KindTerminate}))
	require.Equal(t, 1.0, value(t, m, "provisioner_workspaces", lbl{"status": store.StatusStopped}))
	require.Equal(t, 1.0, value(t, m, "provisioner_workspaces", lbl{"status": store.StatusStopping}))
	require.Equal(t, 1.0, value(t, m, "provisioner_workspaces", lbl{"status": store.StatusProvisioning}))
	require.Equal(t, 0.0, value(t, m, "provisioner_workspaces", lbl{"status": store.StatusRunning}))
	require.Greater(t, value(t, m, "provisioner_oldest_stopping_workspace_age_seconds", nil), 0.0)
	// The dead stop was logged at error level with its ids.
	line := logLine(t, env.Logs.String(), obs.EvJobDiscarded)
	require.Equal(t, "error", line["level"])
	require.Equal(t, b, line["workspace_id"])
	require.Equal(t, float64(stopB.Job.ID), line["job_id"])
	require.Equal(t, 2.0, line["attempt"])
}

// logLine finds the one JSON log line named evt.
func logLine(t *testing.T, logs, evt string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["evt"] == evt {
			found = append(found, m)
		}
	}
	require.Len(t, found, 1, "one %s line", evt)
	return found[0]
}

func TestDBCollector_ExportsNothingBeforeFirstRead(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	c := obs.NewDBCollector(store.MustFor(""), env.Pool, jobs.KindTerminate)
	env.Metrics.Registry.MustRegister(c)
	srv, err := httpapi.New(httpapi.Config{Pool: env.Pool, River: env.Worker, Registry: env.Metrics.Registry})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	m := scrape(t, hs.URL)
	require.Equal(t, 0.0, value(t, m, "provisioner_db_stats_up", nil))
	require.NotContains(t, m, "provisioner_workspaces", "zeros before any read would look like an empty fleet")
}

// foreignArgs is a job of a kind this worker does not run, as anyone who
// can insert into river_job could add.
type foreignArgs struct{ kind string }

func (a foreignArgs) Kind() string { return a.kind }

// collectorServer serves a registry holding only c over the real handler.
func collectorServer(t *testing.T, env *jobtest.Env, c *obs.DBCollector) string {
	t.Helper()
	env.Metrics.Registry.MustRegister(c)
	srv, err := httpapi.New(httpapi.Config{Pool: env.Pool, River: env.Worker, Registry: env.Metrics.Registry})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// Finding 9: provisioner_river_jobs{kind} exported every kind found in
// river_job, an open label set on an unauthenticated page. Only the
// worker's own kinds are labels; the rest add up under "other".
func TestDBCollector_FoldsForeignKindsIntoOther(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	for _, kind := range []string{"evil_kind_1", `evil"kind{2}`, "evil_kind_1"} {
		_, err := env.Insert.Insert(ctx, foreignArgs{kind: kind}, nil)
		require.NoError(t, err)
	}
	env.Provision(jobs.ProvisionRequest{WorkspaceID: uuid.NewString()})
	c := obs.NewDBCollector(store.MustFor(""), env.Pool, jobs.KindProvision, jobs.KindTerminate)
	url := collectorServer(t, env, c)
	require.NoError(t, c.Refresh(ctx))

	m := scrape(t, url)
	kinds := map[string]bool{}
	for _, name := range []string{"provisioner_river_jobs", "provisioner_oldest_available_job_age_seconds"} {
		for _, s := range m[name].GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "kind" {
					kinds[l.GetValue()] = true
				}
			}
		}
	}
	require.Equal(t, map[string]bool{jobs.KindProvision: true, jobs.KindTerminate: true, obs.Other: true}, kinds)
	require.Equal(t, 3.0, value(t, m, "provisioner_river_jobs", lbl{"kind": obs.Other, "state": "available"}))
	require.Equal(t, 1.0, value(t, m, "provisioner_river_jobs", lbl{"kind": jobs.KindProvision, "state": "available"}))
	require.Greater(t, value(t, m, "provisioner_oldest_available_job_age_seconds", lbl{"kind": obs.Other}), 0.0)
	require.Equal(t, 0.0, value(t, m, "provisioner_river_jobs", lbl{"kind": obs.Other, "state": "discarded"}),
		"other exists at zero too")
}

// Finding 10: River UI can pause a queue with one click, and a paused
// terminate queue stops every stop silently. The gauge shows it (0 when
// running, so the alert's series exists), per own queue and as a count
// for others.
func TestDBCollector_ExportsPausedQueues(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	for _, q := range []string{jobs.QueueProvision, jobs.QueueTerminate, "someone-elses-queue"} {
		_, err := env.Pool.Exec(ctx, `INSERT INTO river_queue (name, created_at, metadata, updated_at) VALUES ($1, now(), '{}', now())`, q)
		require.NoError(t, err)
	}
	c := obs.NewDBCollector(store.MustFor(""), env.Pool, jobs.KindTerminate).WithQueues(jobs.QueueProvision, jobs.QueueTerminate, jobs.QueueMaintenance)
	url := collectorServer(t, env, c)
	paused := func(queue string) float64 {
		require.NoError(t, c.Refresh(ctx))
		return value(t, scrape(t, url), "provisioner_river_queues_paused", lbl{"queue": queue})
	}
	require.Equal(t, 0.0, paused(jobs.QueueTerminate))
	require.Equal(t, 0.0, paused(jobs.QueueMaintenance), "exported before River ever saw the queue")

	require.NoError(t, env.Insert.QueuePause(ctx, jobs.QueueTerminate, nil))
	require.NoError(t, env.Insert.QueuePause(ctx, "someone-elses-queue", nil))
	require.Equal(t, 1.0, paused(jobs.QueueTerminate))
	require.Equal(t, 0.0, paused(jobs.QueueProvision))
	require.Equal(t, 1.0, paused(obs.Other))

	require.NoError(t, env.Insert.QueueResume(ctx, jobs.QueueTerminate, nil))
	require.Equal(t, 0.0, paused(jobs.QueueTerminate))
}
