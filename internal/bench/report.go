package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Run runs figs in order, printing each result line to w as soon as its
// figure ends, then the summary table. A failing figure is reported and
// the others still run; the error names every figure that failed.
func Run(ctx context.Context, env *Env, figs []Figure, w io.Writer) ([]Result, error) {
	var all []Result
	var failed []string
	hostLine(w, "start")
	env.out = w
	for _, f := range figs {
		env.logf("# %s ...", f.Name)
		// A figure that fails may still return what it measured (the
		// soak when its queue cannot drain): printed, then why it failed.
		res, err := f.Run(ctx, env)
		for _, r := range res {
			fmt.Fprintln(w, r.Line())
		}
		all = append(all, res...)
		if err != nil {
			fmt.Fprintf(w, "# %s failed: %v\n", f.Name, err)
			failed = append(failed, f.Name)
		}
	}
	hostLine(w, "end")
	Summary(w, figs, all)
	if len(failed) > 0 {
		return all, fmt.Errorf("figures failed: %v", failed)
	}
	return all, nil
}

// Summary prints one row per target: the value, the target and whether
// it is met.
func Summary(w io.Writer, figs []Figure, results []Result) {
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name] = r
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "# summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tline\tvalue\ttarget\tmet")
	for _, f := range figs {
		for _, t := range f.Targets {
			r, ok := byName[t.Name]
			target, limitOK := t.String(), true
			if t.LimitLine != "" {
				lim, found := byName[t.LimitLine]
				t.Limit, limitOK = lim.Value, found
				target = t.String()
				if !found {
					target = t.LimitLine + " missing"
				}
			}
			val, met := "missing", "no"
			if ok {
				val = FormatValue(r.Value) + " " + r.Unit
				met = yesNo(limitOK && t.Met(r.Value) && !math.IsNaN(r.Value))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Name, t.Name, val, target, met)
		}
	}
	_ = tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// hostLine notes the machine's size and load as a comment: the figures are
// only comparable between runs on a machine equally idle, and a shared CI
// box rarely is.
func hostLine(w io.Writer, when string) {
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	fmt.Fprintf(w, "# host at %s: %d CPUs, GOMAXPROCS %d, load average %s\n",
		when, runtime.NumCPU(), runtime.GOMAXPROCS(0), load)
}
