package bench_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/bench"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// expectedLines pins every line `make bench` prints: docs/benchmarks.md and
// anyone diffing two runs rely on the names.
var expectedLines = []string{
	"enqueue_row_only_p50", "enqueue_row_only_p99", "enqueue_row_river_p50", "enqueue_row_river_p99",
	"enqueue_row_change_p50", "enqueue_row_change_p99", "enqueue_request_p50", "enqueue_request_p99", "enqueue_overhead_ratio_p50", "enqueue_overhead_ratio_p99",
	"enqueue_vs_bare_row_ratio_p50", "enqueue_vs_river_ratio_p50", "enqueue_row_only_queries", "enqueue_row_river_queries",
	"enqueue_row_change_queries", "enqueue_request_queries",
	"bulk_enqueue_seconds", "bulk_enqueue_rows_jobs_per_s", "bulk_row_river_per_s",
	"bulk_enqueue_vs_river_ratio", "bulk_river_insertmany_jobs_per_s",
	"bulk_many_seconds", "bulk_many_workspaces_per_s", "bulk_river_insertmany_noop_jobs_per_s", "bulk_many_vs_insertmany_ratio",
	"throughput_run1_bare_river_jobs_per_s", "throughput_run1_ceiling_jobs_per_s", "throughput_run1_worker_jobs_per_s",
	"throughput_run1_worker_async_commit_jobs_per_s",
	"throughput_run1_worker_vs_ceiling_ratio", "throughput_run1_worker_vs_bare_ratio", "throughput_run1_worker_async_commit_vs_worker_ratio",
	"throughput_run2_bare_river_jobs_per_s", "throughput_run2_ceiling_jobs_per_s", "throughput_run2_worker_jobs_per_s",
	"throughput_run2_worker_async_commit_jobs_per_s",
	"throughput_run2_worker_vs_ceiling_ratio", "throughput_run2_worker_vs_bare_ratio", "throughput_run2_worker_async_commit_vs_worker_ratio",
	"throughput_run3_bare_river_jobs_per_s", "throughput_run3_ceiling_jobs_per_s", "throughput_run3_worker_jobs_per_s",
	"throughput_run3_worker_async_commit_jobs_per_s",
	"throughput_run3_worker_vs_ceiling_ratio", "throughput_run3_worker_vs_bare_ratio", "throughput_run3_worker_async_commit_vs_worker_ratio",
	"throughput_bare_river_jobs_per_s", "throughput_ceiling_jobs_per_s", "throughput_worker_jobs_per_s", "throughput_worker_async_commit_jobs_per_s",
	"throughput_bare_river_queries_per_job", "throughput_ceiling_queries_per_job", "throughput_worker_queries_per_job", "throughput_worker_async_commit_queries_per_job",
	"throughput_bare_river_round_trips_per_job", "throughput_ceiling_round_trips_per_job", "throughput_worker_round_trips_per_job", "throughput_worker_async_commit_round_trips_per_job",
	"throughput_worker_vs_ceiling_ratio", "throughput_worker_vs_bare_ratio", "throughput_worker_async_commit_vs_worker_ratio",
	"pickup_prod_p50", "pickup_prod_p99", "pickup_prod_idle_queries_per_s",
	"pickup_river_defaults_p50", "pickup_river_defaults_p99", "pickup_river_defaults_idle_queries_per_s",
	"pickup_poll20ms_p50", "pickup_poll20ms_p99", "pickup_poll20ms_idle_queries_per_s",
	"pickup_prod_20rps_p50", "pickup_prod_20rps_p99",
	"slow_cp_makespan_s", "slow_cp_ideal_s", "slow_cp_makespan_ratio",
	"sweep_300_seconds", "sweep_300_peak_heap_mb", "sweep_300_peak_live_heap_mb", "sweep_300_orphans_found",
	"sweep_3k_seconds", "sweep_3k_peak_heap_mb", "sweep_3k_peak_live_heap_mb", "sweep_3k_orphans_found",
	"sweep_300_to_3k_time_ratio", "sweep_300_to_3k_heap_ratio",
	"sweep_largest_seconds", "sweep_largest_peak_heap_mb", "sweep_largest_peak_live_heap_mb", "sweep_max_time_ratio_per_10x",
	"soak_seconds", "soak_requests", "soak_requests_per_s", "soak_workers_per_queue",
	"soak_drained", "soak_drain_seconds", "soak_provisions_done", "soak_terminates_done",
	"soak_provisions_done_per_s", "soak_terminates_done_per_s", "soak_requests_never_picked_up",
	"soak_jobs_retried", "soak_jobs_snoozed",
	"soak_pickup_first_p50", "soak_pickup_first_p99", "soak_pickup_last_p50", "soak_pickup_last_p99",
	"soak_pickup_p99_last_vs_first_ratio", "soak_queue_depth_max", "soak_queue_depth_samples",
	"soak_worker_queries_per_s", "soak_handler_queries_per_s",
	"soak_worker_pool_max_conns", "soak_worker_pool_empty_acquire_share", "soak_worker_pool_mean_waiters",
	"soak_handler_pool_max_conns", "soak_handler_pool_empty_acquire_share", "soak_handler_pool_mean_waiters",
	"soak_pool_conns_start", "soak_pool_conns_end",
	"soak_heap_start_mb", "soak_heap_end_mb", "soak_heap_growth_mb", "soak_heap_noise_mb", "soak_heap_inuse_start_mb", "soak_heap_inuse_end_mb", "soak_cp_fake_heap_mb",
	"soak_goroutines_start", "soak_goroutines_end", "soak_goroutines_growth", "soak_goroutines_noise",
}

// mayBeZero are lines whose value can honestly be zero or negative: growth
// that did not happen, a queue the sampler found empty, a live heap no GC
// measured during a short sweep.
var mayBeZero = map[string]bool{
	"soak_heap_growth_mb": true, "soak_goroutines_growth": true, "soak_queue_depth_max": true,
	"soak_requests_never_picked_up": true, "soak_worker_pool_empty_acquire_share": true,
	"soak_jobs_retried": true, "soak_jobs_snoozed": true,
	"soak_worker_pool_mean_waiters": true, "soak_handler_pool_empty_acquire_share": true,
	"soak_handler_pool_mean_waiters": true,
	"soak_cp_fake_heap_mb":           true, "sweep_300_peak_live_heap_mb": true, "sweep_3k_peak_live_heap_mb": true,
	"sweep_largest_peak_live_heap_mb": true,
}

func testSource(t *testing.T) bench.DBSource {
	return func(ctx context.Context) (*pgxpool.Pool, error) {
		pool, _ := testdb.NewPool(t)
		return pool, nil
	}
}

// TestQuick_EveryFigurePrintsItsLines is the smoke run that keeps `make
// bench` from rotting: every figure runs with tiny N and prints each of
// its lines once, with a positive finite value, then the summary.
func TestQuick_EveryFigurePrintsItsLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := &bench.Env{NewDB: testSource(t), Scale: bench.QuickScale()}
	var out bytes.Buffer
	results, err := bench.Run(ctx, env, bench.Figures(), &out)
	require.NoError(t, err, out.String())

	var names []string
	for _, r := range results {
		names = append(names, r.Name)
		require.Falsef(t, math.IsNaN(r.Value) || math.IsInf(r.Value, 0), "%s is not finite: %v", r.Name, r.Value)
		if !mayBeZero[r.Name] {
			require.Greaterf(t, r.Value, 0.0, "%s", r.Name)
		}
		require.Contains(t, out.String(), r.Line()+"\n")
	}
	require.Equal(t, expectedLines, names)
	require.Contains(t, out.String(), "# summary")
	byName := map[string]float64{}
	for _, r := range results {
		byName[r.Name] = r.Value
	}
	// Each sweep found every orphan (2 % of its fleet; the figure itself
	// fails unless it also listed the whole fleet).
	require.Equal(t, 6.0, byName["sweep_300_orphans_found"])
	require.Equal(t, 60.0, byName["sweep_3k_orphans_found"])
	// The soak sent its load, sampled the queue all along and printed the
	// samples on one comment line.
	scale := bench.QuickScale()
	require.GreaterOrEqual(t, byName["soak_requests"], scale.SoakRate*scale.SoakDuration.Seconds()*0.9)
	wantSamples := scale.SoakDuration.Seconds() / scale.SoakDepthEvery.Seconds()
	require.GreaterOrEqual(t, byName["soak_queue_depth_samples"], wantSamples)
	depth := regexp.MustCompile(`(?m)^# soak_queue_depth every 500ms \(available\+running jobs\):((?: \d+)+)$`).FindStringSubmatch(out.String())
	require.NotNil(t, depth, out.String())
	require.Len(t, strings.Fields(depth[1]), int(byName["soak_queue_depth_samples"]))
	// It drained: every request's provision and terminate ran, each
	// request was picked up, and the verdict line says how it judged.
	require.Equal(t, 1.0, byName["soak_drained"])
	require.Equal(t, byName["soak_requests"], byName["soak_provisions_done"])
	require.Equal(t, byName["soak_requests"], byName["soak_terminates_done"])
	require.Equal(t, 0.0, byName["soak_requests_never_picked_up"])
	require.Regexp(t, `(?m)^# soak_done_per_s every 500ms \(provisions/terminates completed per second\):( [0-9.]+/[0-9.]+)+$`, out.String())
	require.Regexp(t, `(?m)^# soak verdict: (PASS \(pickup p99|FAIL: )`, out.String())
	for _, f := range bench.Figures() {
		for _, tg := range f.Targets {
			require.Containsf(t, names, tg.Name, "target of %s judges a line no figure prints", f.Name)
		}
	}
}

// A figure that fails after measuring (the soak when its queue cannot
// drain) still prints its lines, then why it failed, and the summary
// judges them: it used to print only the error.
func TestRun_FailedFigurePrintsWhatItMeasured(t *testing.T) {
	t.Parallel()
	fig := bench.Figure{Name: "f", Targets: []bench.Target{{Name: "f_ratio", AtMost: true, Limit: 1.5}},
		Run: func(context.Context, *bench.Env) ([]bench.Result, error) {
			return []bench.Result{{Name: "f_ratio", Value: 2, Unit: "x"}}, errors.New("drain: 3 of 9 done")
		}}
	var out bytes.Buffer
	res, err := bench.Run(context.Background(), &bench.Env{}, []bench.Figure{fig}, &out)
	require.ErrorContains(t, err, "figures failed: [f]")
	require.Len(t, res, 1)
	require.Regexp(t, `(?s)\nf_ratio 2 x\n# f failed: drain: 3 of 9 done\n`, out.String())
	require.Regexp(t, `f_ratio\s+2 x\s+<= 1.5\s+no`, out.String())
}

func TestSelect_UnknownFigureIsAnError(t *testing.T) {
	t.Parallel()
	_, err := bench.Select("enqueue,nope")
	require.ErrorContains(t, err, `unknown figure "nope"`)
	figs, err := bench.Select("sweep, pickup")
	require.NoError(t, err)
	require.Len(t, figs, 2)
	require.Equal(t, "sweep", figs[0].Name)
}

func TestResultLine_NameValueUnit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		r    bench.Result
		want string
	}{
		{bench.Result{Name: "enqueue_overhead_ratio_p50", Value: 1.1234, Unit: "x"}, "enqueue_overhead_ratio_p50 1.12 x"},
		{bench.Result{Name: "bulk_enqueue_rows_jobs_per_s", Value: 12345.6, Unit: "/s"}, "bulk_enqueue_rows_jobs_per_s 12346 /s"},
		{bench.Result{Name: "pickup_prod_p50", Value: 0.0421, Unit: "ms"}, "pickup_prod_p50 0.0421 ms"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, c.r.Line())
		require.Len(t, strings.Fields(c.r.Line()), 3)
	}
}

func TestSummary_MarksMissedAndMissingTargets(t *testing.T) {
	t.Parallel()
	figs := []bench.Figure{{Name: "f", Targets: []bench.Target{
		{Name: "low", AtMost: true, Limit: 1.3},
		{Name: "high", Limit: 0.5},
		{Name: "absent", AtMost: true, Limit: 1},
		{Name: "growth", AtMost: true, LimitLine: "noise"},
		{Name: "low", AtMost: true, LimitLine: "absent"},
	}}}
	var out bytes.Buffer
	bench.Summary(&out, figs, []bench.Result{{Name: "low", Value: 2, Unit: "x"}, {Name: "high", Value: 0.7, Unit: "x"},
		{Name: "growth", Value: 5, Unit: "MB"}, {Name: "noise", Value: 4, Unit: "MB"}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 7) // blank line trimmed: "# summary", header, five rows
	require.Regexp(t, `low\s+2 x\s+<= 1.3\s+no$`, lines[2])
	require.Regexp(t, `high\s+0.7 x\s+>= 0.5\s+yes$`, lines[3])
	require.Regexp(t, `absent\s+missing\s+<= 1\s+no$`, lines[4])
	require.Regexp(t, `growth\s+5 MB\s+<= 4\s+no$`, lines[5])       // the limit is the noise line's value
	require.Regexp(t, `low\s+2 x\s+absent missing\s+no$`, lines[6]) // a missing limit line fails the target
}

// TestSweep_OneSizeJudgesNoRatio: with one fleet size there is no step
// to scale, so the ratio line is absent and the summary says so, rather
// than printing a ratio of 0 that the summary judged met.
func TestSweep_OneSizeJudgesNoRatio(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := &bench.Env{NewDB: testSource(t), Scale: bench.Scale{SweepNs: []int{300}}}
	results, err := bench.Sweep(ctx, env)
	require.NoError(t, err)
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
	}
	require.Contains(t, names, "sweep_largest_seconds")
	require.NotContains(t, names, "sweep_max_time_ratio_per_10x")
	figs, err := bench.Select("sweep")
	require.NoError(t, err)
	var out bytes.Buffer
	bench.Summary(&out, figs, results)
	require.Regexp(t, `sweep_max_time_ratio_per_10x\s+missing\s+<= 10\s+no`, out.String())
}
