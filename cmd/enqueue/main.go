// Command enqueue is the operator's and scripts' door to the same library
// calls request handlers make: each subcommand runs in one transaction
// (the row change and its job commit together or not at all) and prints
// JSON. Exit 0 done, 2 bad input (nothing written), 1 anything else.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/obs"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// With OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT set, the job's trace starts
	// at this insert; a tracing setup error never blocks an operator.
	if shutdown, err := obs.Setup(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue: tracing off:", err)
	} else {
		defer flushTraces(shutdown)
	}
	cli := app.CLI{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, LookupEnv: os.LookupEnv}
	err := app.RunEnqueue(ctx, cli, os.Args[1:])
	switch {
	case err == nil || app.IsHelp(err):
		return 0
	case app.IsBadInput(err):
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		return 2
	default:
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		return 1
	}
}

// flushTraces exports the batched spans, bounded so a dead collector
// cannot hold up the command.
func flushTraces(shutdown func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue: flush traces:", err)
	}
}
