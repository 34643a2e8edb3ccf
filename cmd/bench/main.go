// Command bench measures the worker against the bare River it is built on,
// on one Postgres server in one run, and prints `name value unit` lines and
// a summary against the targets (docs/benchmarks.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/molecule-ai/provision-worker/internal/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "tiny N: checks that every figure runs; the numbers mean nothing")
	only := fs.String("only", "", "comma-separated figures to run ("+strings.Join(bench.Names(), ", ")+"); default all")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	heapProfile := fs.String("heapprofile", "", "write a heap profile at the end of the run to this file")
	soak := fs.Duration("soak", 0, "soak duration (default 2m, with --quick 3s)")
	soakWorkers := fs.Int("soak-workers", 0, "provision and terminate workers each in the soak (default 40)")
	sweepSizes := fs.String("sweep-sizes", "", "comma-separated fleet sizes of the sweep (default 10000,100000,1000000)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	figs, err := bench.Select(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	scale := bench.FullScale()
	if *quick {
		scale = bench.QuickScale()
	}
	if *soak > 0 {
		scale.SoakDuration = *soak
	}
	if *soakWorkers > 0 {
		scale.SoakWorkers = *soakWorkers
	}
	if *sweepSizes != "" {
		if scale.SweepNs, err = parseSizes(*sweepSizes); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}
	// The Postgres server comes from DATABASE_URL only (a flag would show
	// its password in ps); the bench creates a scratch database per figure
	// on it and drops them after.
	scratch, err := bench.NewScratch(firstNonEmpty(os.Getenv("DATABASE_URL"), bench.LocalServer))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer func() {
		if err := scratch.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}()
	if *cpuProfile != "" {
		stop, err := startProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer stop()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *heapProfile != "" {
		defer writeHeapProfile(*heapProfile)
	}
	env := &bench.Env{NewDB: scratch.NewDB, Scale: scale, Log: os.Stderr}
	if _, err := bench.Run(ctx, env, figs, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// writeHeapProfile writes the heap profile; with the default sampling it
// shows what was allocated over the run (go tool pprof -sample_index=alloc_space).
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: heap profile:", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "bench: heap profile:", err)
	}
}

// parseSizes reads "10000,100000" as fleet sizes, each at least 50 (so a
// 2 % share of orphans is at least one).
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 50 {
			return nil, fmt.Errorf("sweep size %q: want an integer of at least 50", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
