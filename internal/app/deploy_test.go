package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The files operators import (issue 16, 2): alert rules and a dashboard.
// Both are only as good as the metric names in them: a renamed series
// turns an alert into one that never fires and a panel into "No data",
// silently. So every expression is parsed with Prometheus' own parser and
// every name it selects must be on the /metrics page of a real worker.
const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/provisioner.json"
	readmeFile    = "../../README.md"
)

// startWorker runs RunWorker, the worker's real wiring, against a fresh
// database and a fake CP, and returns its base URL once it is ready.
func startWorker(t *testing.T) string {
	t.Helper()
	sim := cpfake.Start(cpfake.Options{OrgID: "org-deploy"})
	t.Cleanup(sim.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	vars := map[string]string{"DATABASE_URL": testdb.New(t), "MOLECULE_ORG_ID": "org-deploy",
		"CP_PROVISION_URL": sim.URL, "WORKER_HTTP_ADDR": addr}
	c, err := ParseWorker(nil, func(k string) string { return vars[k] })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunWorker(ctx, c, zerolog.New(io.Discard)) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	url := "http://" + addr
	// The worker is another goroutine behind HTTP: poll /readyz as a
	// Prometheus target would be probed, failing fast if it exits.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("worker exited before it was ready: %v", err)
		default:
		}
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "worker not ready after 30s")
		time.Sleep(50 * time.Millisecond)
	}
	// The database gauges appear after their first read.
	for value(t, scrape(t, url), "provisioner_db_stats_up", nil) != 1 {
		require.True(t, time.Now().Before(deadline), "database gauges not read after 30s")
		time.Sleep(50 * time.Millisecond)
	}
	return url
}

// rawMetrics is the /metrics page as text.
func rawMetrics(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

// exportedNames is every series name a query may select: each family's
// name, and for histograms and summaries their _bucket, _sum and _count.
func exportedNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names
}

var promql = parser.NewParser(parser.Options{})

// selectedNames parses expr with Prometheus' parser and returns the metric
// names its selectors name. A selector without a literal name (a regex on
// __name__) is an error: it cannot be checked.
func selectedNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name == "" {
			err = errors.New("a selector without a metric name: " + vs.String())
			return err
		}
		names = append(names, vs.Name)
		return nil
	})
	return names, err
}

// unexported returns the names expr selects that the worker does not export.
func unexported(expr string, exported map[string]bool) ([]string, error) {
	names, err := selectedNames(expr)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range names {
		if !exported[n] {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// readAlerts reads the rule file strictly: a misspelt key (`exp:`) is an
// error, as it is for Prometheus.
func readAlerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&doc))
	var rules []alertRule
	for _, g := range doc.Groups {
		require.NotEmpty(t, g.Name)
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) []dashboardPanel {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var doc struct {
		UID    string           `json:"uid"`
		Title  string           `json:"title"`
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	require.NotEmpty(t, doc.UID)
	require.NotEmpty(t, doc.Panels)
	return doc.Panels
}

func TestDeploy_FilesMatchALiveWorker(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	raw := rawMetrics(t, url)
	fams := scrape(t, url)
	exported := exportedNames(fams)

	t.Run("every alert rule parses and selects only exported series", func(t *testing.T) {
		for _, r := range readAlerts(t) {
			require.NotEmpty(t, r.Alert, "every rule is an alert: %q", r.Expr)
			missing, err := unexported(r.Expr, exported)
			require.NoError(t, err, "alert %s", r.Alert)
			require.Empty(t, missing, "alert %s selects series the worker does not export", r.Alert)
			if r.For != "" {
				_, err := model.ParseDuration(r.For)
				require.NoError(t, err, "alert %s: for", r.Alert)
			}
			require.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], "alert %s", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s", r.Alert)
		}
	})

	t.Run("every dashboard query parses and selects only exported series", func(t *testing.T) {
		queries := 0
		for _, p := range readDashboard(t) {
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, q := range p.Targets {
				queries++
				missing, err := unexported(q.Expr, exported)
				require.NoError(t, err, "panel %q", p.Title)
				require.Empty(t, missing, "panel %q selects series the worker does not export", p.Title)
			}
		}
		require.GreaterOrEqual(t, queries, 10)
	})

	t.Run("the dashboard shows what operators asked for", func(t *testing.T) {
		var all []string
		for _, p := range readDashboard(t) {
			for _, q := range p.Targets {
				names, err := selectedNames(q.Expr)
				require.NoError(t, err)
				all = append(all, names...)
			}
		}
		for _, want := range []string{
			"provisioner_river_jobs", "provisioner_oldest_available_job_age_seconds",
			"provisioner_cp_requests_total", "provisioner_cp_request_duration_seconds_bucket",
			"provisioner_terminate_retries_total", "provisioner_terminate_stuck_total",
			"provisioner_oldest_stopping_workspace_age_seconds", "provisioner_sweeps_total",
			"provisioner_orphans_found_total", "provisioner_sweep_cp_seen_timestamp_seconds",
			"provisioner_sweep_unreadable_instances", "provisioner_workspaces", "provisioner_river_queues_paused",
		} {
			require.Contains(t, all, want)
		}
	})

	t.Run("promlint finds nothing on the live page", func(t *testing.T) {
		problems, err := promlint.New(bytes.NewReader(raw)).Lint()
		require.NoError(t, err)
		require.Empty(t, problems)
	})

	// A counter born at 1 shows no increase(): the first stuck stop or
	// open breaker in a process would never fire its alert.
	t.Run("alerted counters exist at zero from the start", func(t *testing.T) {
		for _, k := range []string{jobs.KindTerminate, jobs.KindInstanceTerminate} {
			require.Equal(t, 0.0, value(t, fams, "provisioner_terminate_stuck_total", lbl{"kind": k}))
		}
		require.Equal(t, 0.0, value(t, fams, "provisioner_sweeps_total", lbl{"result": "breaker_open"}))
		require.Equal(t, 0.0, value(t, fams, "provisioner_cp_requests_total", lbl{"route": "terminate", "code": "5xx"}))
	})
}

// The checks above must be able to fail.
func TestDeploy_CheckCatchesBadExpressions(t *testing.T) {
	t.Parallel()
	exported := map[string]bool{"provisioner_river_jobs": true}
	for _, tc := range []struct{ name, expr string }{
		{"misspelt name", `max(provisioner_river_job) > 0`},
		{"syntax error", `max(provisioner_river_jobs > 0`},
		{"unknown function", `maxx(provisioner_river_jobs)`},
		{"name only by regex", `{__name__=~"provisioner_.*"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			missing, err := unexported(tc.expr, exported)
			require.True(t, err != nil || len(missing) > 0)
		})
	}
	missing, err := unexported(`max(provisioner_river_jobs{state="discarded"}) > 0`, exported)
	require.NoError(t, err)
	require.Empty(t, missing)

	problems, err := promlint.New(strings.NewReader("# HELP x_total x\n# TYPE x_total gauge\nx_total 1\n")).Lint()
	require.NoError(t, err)
	require.NotEmpty(t, problems, "promlint flags a gauge named like a counter")
}

// alertTable matches a row of the README's alert table: | `Name` | ... |
var alertTable = regexp.MustCompile("(?m)^\\| `([A-Z][A-Za-z0-9]+)` \\|")

// The README points to the rule file instead of holding a copy that drifts:
// it carries no rule expression, and its table names exactly the alerts
// the file defines.
func TestREADME_AlertsTableMatchesTheRulesFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(readmeFile)
	require.NoError(t, err)
	readme := string(b)
	require.Contains(t, readme, "deploy/prometheus/alerts.yml")
	require.NotRegexp(t, `(?m)^\s*-?\s*expr:`, readme, "the rules live in deploy/prometheus/alerts.yml only")
	var inReadme []string
	for _, m := range alertTable.FindAllStringSubmatch(readme, -1) {
		inReadme = append(inReadme, m[1])
	}
	var inFile []string
	for _, r := range readAlerts(t) {
		inFile = append(inFile, r.Alert)
	}
	sort.Strings(inReadme)
	sort.Strings(inFile)
	require.Equal(t, inFile, slices.Compact(inReadme))
}
