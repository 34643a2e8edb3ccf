// Command embedhost is a test-only host process that embeds the worker
// the way a platform would: its own http.ServeMux with its own route,
// the worker built with provisioner.FromEnv and provisioner.New, its
// handler mounted under /provisioner/, and on SIGTERM the worker's
// graceful Stop before its own server shuts down. The chaos tests
// SIGKILL and restart it exactly as they do cmd/worker, so every
// guarantee they check holds for the embedded form too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/molecule-ai/provision-worker/provisioner"
)

func main() {
	os.Exit(run())
}

func run() int {
	addr := flag.String("addr", "127.0.0.1:0", "the host's own listening address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := provisioner.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedhost:", err)
		return 2
	}
	w, err := provisioner.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedhost:", err)
		return 1
	}
	if err := serve(ctx, w, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "embedhost:", err)
		return 1
	}
	return 0
}

// serve runs the host's server and the worker until ctx ends.
func serve(ctx context.Context, w *provisioner.Worker, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /host/ping", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("pong\n")) })
	mux.Handle("/provisioner/", http.StripPrefix("/provisioner", w.Handler()))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = w.Stop(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if err := w.Start(ctx); err != nil {
		_ = w.Stop(context.Background())
		return err
	}
	fmt.Fprintf(os.Stderr, "{\"evt\":\"host.listening\",\"addr\":%q}\n", ln.Addr().String())
	<-ctx.Done()
	stopErr := w.Stop(context.Background())
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(stopErr, err)
	}
	return stopErr
}
