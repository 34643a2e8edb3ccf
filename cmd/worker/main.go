// Command worker runs the provisioning worker: River's client working
// provisions, terminates and the orphan sweep, with River UI, /metrics
// and health probes on WORKER_HTTP_ADDR. `worker migrate up|down|status`
// runs the goose migrations. `worker --help` lists every setting.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/obs"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd, ok := app.FindWorkerCommand(args); ok {
		return exit(cmd.Run(ctx, args[1:], os.Getenv, os.Stdout), cmd.Usage)
	}
	cfg, err := app.ParseWorker(args, os.Getenv)
	if err != nil {
		return exit(err, app.WorkerUsage)
	}
	log, err := obs.NewLogger(os.Stderr, cfg.LogLevel)
	if err != nil {
		return exit(fmt.Errorf("%w: LOG_LEVEL: %w", config.ErrUsage, err), app.WorkerUsage)
	}
	// Tracing is off unless OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set.
	shutdownTracing, err := obs.Setup(ctx, os.Getenv)
	if err != nil {
		return exit(fmt.Errorf("%w: %w", config.ErrUsage, err), app.WorkerUsage)
	}
	defer flushTraces(shutdownTracing, log)
	if err := app.RunWorker(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("worker failed")
		return 1
	}
	return 0
}

// flushTraces exports the spans still batched, bounded so a dead
// collector cannot hold up the exit.
func flushTraces(shutdown func(context.Context) error, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn().Str("evt", "tracing.flush_failed").Err(err).Msg("flush traces")
	}
}

// exit maps an error to the exit code: 0 done (or --help), 2 bad input,
// 1 anything else.
func exit(err error, usage func(w io.Writer)) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		usage(os.Stdout)
		return 0
	case errors.Is(err, config.ErrUsage):
		fmt.Fprintln(os.Stderr, "worker:", err)
		fmt.Fprintln(os.Stderr, "run `worker --help` for every setting")
		return 2
	}
	fmt.Fprintln(os.Stderr, "worker:", err)
	return 1
}
