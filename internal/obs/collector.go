package obs

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// DBCollector exports the database-side gauges: jobs by kind and state,
// the oldest available job's age per kind, workspaces by status and the
// oldest stopping row's age. It reads the database on its own interval
// (Run), not on scrape, so a scrape storm or two replicas scraped every
// second never turn into a query storm, and a slow database never makes
// /metrics time out.
//
// Every known kind × state and every status is exported, zero included:
// an alert on `provisioner_river_jobs{state="discarded"} > 0` needs the
// series to exist before the first job dies, or it never fires.
//
// Only the worker's own kinds and queues are label values; the rest are
// folded into "other". /metrics needs no login, and anyone who can insert
// a job (or name a queue) could otherwise add series at will and put
// their own text on the page.
type DBCollector struct {
	st     *store.Store
	db     store.DB
	kinds  []string
	queues []string

	mu    sync.Mutex
	stats store.QueueStats
	ok    bool
	at    time.Time

	jobs, oldestAvail, workspaces, oldestStopping, up, readAt, paused *prometheus.Desc
}

// Other is the kind and queue label of everything this worker does not run.
const Other = "other"

// workspaceStatuses are exported even at zero (see DBCollector).
var workspaceStatuses = []string{store.StatusProvisioning, store.StatusRunning, store.StatusStopping,
	store.StatusStopped, store.StatusRemoved, store.StatusFailed}

// NewDBCollector reads db; kinds are the job kinds always exported.
func NewDBCollector(st *store.Store, db store.DB, kinds ...string) *DBCollector {
	return &DBCollector{
		st: st, db: db, kinds: kinds,
		jobs: prometheus.NewDesc("provisioner_river_jobs",
			"River jobs by kind and state, read from the database.", []string{"kind", "state"}, nil),
		oldestAvail: prometheus.NewDesc("provisioner_oldest_available_job_age_seconds",
			"Age of the oldest available (runnable, not yet picked up) job per kind; 0 when none waits.", []string{"kind"}, nil),
		workspaces: prometheus.NewDesc("provisioner_workspaces",
			"Workspace rows by status.", []string{"status"}, nil),
		oldestStopping: prometheus.NewDesc("provisioner_oldest_stopping_workspace_age_seconds",
			"How long the oldest stopping workspace has been stopping; 0 when none is. A stop stuck here may be leaking an instance.", nil, nil),
		up: prometheus.NewDesc("provisioner_db_stats_up",
			"1 when the last read of the database gauges succeeded.", nil, nil),
		readAt: prometheus.NewDesc("provisioner_db_stats_last_success_timestamp_seconds",
			"Unix time of the last successful read of the database gauges.", nil, nil),
		paused: prometheus.NewDesc("provisioner_river_queues_paused",
			"Paused River queues (river_queue.paused_at set): 1 or 0 per queue of this worker, a count for other. A paused terminate queue stops every stop, silently.", []string{"queue"}, nil),
	}
}

// WithQueues names the queues exported by provisioner_river_queues_paused
// (always, zero included); others are counted under "other".
func (c *DBCollector) WithQueues(queues ...string) *DBCollector {
	c.queues = queues
	return c
}

// Refresh reads the database once. On an error the previous snapshot is
// kept (stale beats absent for an alert) and provisioner_db_stats_up is 0.
func (c *DBCollector) Refresh(ctx context.Context) error {
	s, err := c.st.ReadQueueStats(ctx, c.db)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ok = err == nil
	if err != nil {
		return err
	}
	c.stats, c.at = s, time.Now()
	return nil
}

// Run refreshes every interval until ctx ends; onErr sees read failures.
func (c *DBCollector) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		if err := c.Refresh(rctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobs, c.oldestAvail, c.workspaces, c.oldestStopping, c.up, c.readAt, c.paused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the last snapshot.
func (c *DBCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s, ok, at := c.stats, c.ok, c.at
	c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.up, boolFloat(ok))
	if at.IsZero() {
		return // never read: export nothing rather than zeros that look true
	}
	gauge(c.readAt, float64(at.UnixNano())/1e9)
	counts, oldest := c.foldKinds(s)
	for _, kind := range append(slices.Clone(c.kinds), Other) {
		for _, st := range rivertype.JobStates() {
			gauge(c.jobs, float64(counts[[2]string{kind, string(st)}]), kind, string(st))
		}
		gauge(c.oldestAvail, oldest[kind], kind)
	}
	for _, st := range workspaceStatuses {
		gauge(c.workspaces, float64(s.WorkspacesByStatus[st]), st)
	}
	gauge(c.oldestStopping, s.OldestStoppingSeconds)
	for queue, n := range c.foldQueues(s) {
		gauge(c.paused, n, queue)
	}
}

// foldKinds maps every kind this worker does not run to Other: job
// counts add up, and the oldest available age is the oldest of them.
func (c *DBCollector) foldKinds(s store.QueueStats) (map[[2]string]int64, map[string]float64) {
	counts := map[[2]string]int64{}
	for ks, n := range s.JobsByKindState {
		counts[[2]string{c.kindLabel(ks[0]), ks[1]}] += n
	}
	oldest := map[string]float64{}
	for kind, age := range s.OldestAvailableSeconds {
		k := c.kindLabel(kind)
		oldest[k] = max(oldest[k], age)
	}
	return counts, oldest
}

func (c *DBCollector) kindLabel(kind string) string {
	if slices.Contains(c.kinds, kind) {
		return kind
	}
	return Other
}

// foldQueues is 0/1 per queue of this worker and the number of other
// paused queues, every label present.
func (c *DBCollector) foldQueues(s store.QueueStats) map[string]float64 {
	out := map[string]float64{Other: 0}
	for _, q := range c.queues {
		out[q] = 0
	}
	for q, paused := range s.PausedQueues {
		if !paused {
			continue
		}
		if slices.Contains(c.queues, q) {
			out[q] = 1
		} else {
			out[Other]++
		}
	}
	return out
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
