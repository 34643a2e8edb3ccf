// Package bench measures the worker against the bare River it is built on,
// on the same Postgres and machine in the same run, and reports ratios as
// well as absolute figures: absolute times vary from machine to machine,
// ratios against River's own ceiling travel.
//
// Each figure is a function returning Results; cmd/bench prints them and
// a summary against the targets of project issue 6.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Result is one printed line: `name value unit`.
type Result struct {
	Name  string
	Value float64
	Unit  string
}

// Line formats r as the bench prints it.
func (r Result) Line() string {
	return r.Name + " " + FormatValue(r.Value) + " " + r.Unit
}

// FormatValue keeps small values readable and large ones free of
// exponents, so the lines stay easy to diff between runs.
func FormatValue(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// Target is a goal from the issue, checked against one result line.
type Target struct {
	Name   string // the result line it judges
	AtMost bool   // true: value ≤ Limit; false: value ≥ Limit
	Limit  float64
	// LimitLine, if set, names the result line whose value is the limit
	// (a noise threshold the figure derives from its own start), and
	// Limit is ignored.
	LimitLine string
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	if t.AtMost {
		return v <= t.Limit
	}
	return v >= t.Limit
}

// String renders the target as "≤ 1.3".
func (t Target) String() string {
	if t.AtMost {
		return "<= " + FormatValue(t.Limit)
	}
	return ">= " + FormatValue(t.Limit)
}

// DBSource hands each figure a fresh migrated database, so one figure's
// leftover jobs never slow or feed another. Whoever built the source
// drops the databases.
type DBSource func(ctx context.Context) (*pgxpool.Pool, error)

// Env is what every figure gets.
type Env struct {
	NewDB DBSource
	Scale Scale
	Log   io.Writer // progress notes; never the result lines

	out io.Writer // where Run prints the results, for notes
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", args...)
	}
}

// notef prints a comment line among the results: what does not fit one
// `name value unit` line (a series of samples), kept out of the lines
// that runs are diffed by.
func (e *Env) notef(format string, args ...any) {
	if e.out != nil {
		fmt.Fprintf(e.out, "# "+format+"\n", args...)
	}
}

// Figure is one measurement of the issue.
type Figure struct {
	Name    string
	Run     func(ctx context.Context, env *Env) ([]Result, error)
	Targets []Target
}

// Figures lists every figure in the order the issue numbers them.
func Figures() []Figure {
	return []Figure{
		{Name: "enqueue", Run: Enqueue, Targets: []Target{
			{Name: "enqueue_overhead_ratio_p50", AtMost: true, Limit: 1.3},
			{Name: "enqueue_overhead_ratio_p99", AtMost: true, Limit: 1.3},
		}},
		{Name: "bulk", Run: Bulk, Targets: []Target{
			{Name: "bulk_many_workspaces_per_s", Limit: 10_000},
		}},
		{Name: "throughput", Run: Throughput, Targets: []Target{
			{Name: "throughput_worker_vs_ceiling_ratio", Limit: 1.0},
			{Name: "throughput_worker_vs_bare_ratio", Limit: 0.5},
		}},
		{Name: "pickup", Run: Pickup, Targets: []Target{
			{Name: "pickup_prod_p50", AtMost: true, Limit: 20},
			{Name: "pickup_prod_p99", AtMost: true, Limit: 150},
		}},
		{Name: "slowcp", Run: SlowCP, Targets: []Target{
			{Name: "slow_cp_makespan_ratio", AtMost: true, Limit: 1.2},
		}},
		{Name: "sweep", Run: Sweep, Targets: []Target{
			// The largest fleet: 1,000,000 in the full run.
			{Name: "sweep_largest_seconds", AtMost: true, Limit: 20},
			{Name: "sweep_largest_peak_heap_mb", AtMost: true, Limit: 100},
			{Name: "sweep_max_time_ratio_per_10x", AtMost: true, Limit: 10},
		}},
		{Name: "soak", Run: Soak, Targets: []Target{
			{Name: "soak_pickup_p99_last_vs_first_ratio", AtMost: true, Limit: soakP99RatioLimit},
			{Name: "soak_heap_growth_mb", AtMost: true, LimitLine: "soak_heap_noise_mb"},
			{Name: "soak_goroutines_growth", AtMost: true, LimitLine: "soak_goroutines_noise"},
		}},
	}
}

// Select returns the figures named in only (comma-separated), or all.
func Select(only string) ([]Figure, error) {
	all := Figures()
	if only == "" {
		return all, nil
	}
	var out []Figure
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, f := range all {
			if f.Name == name {
				out = append(out, f)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown figure %q (have %s)", name, strings.Join(Names(), ", "))
		}
	}
	return out, nil
}

// Names lists the figures' names.
func Names() []string {
	var names []string
	for _, f := range Figures() {
		names = append(names, f.Name)
	}
	return names
}
