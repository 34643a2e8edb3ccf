package app

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/httpapi"
	"github.com/molecule-ai/provision-worker/provisioner"
)

// evListening says where the command serves the worker's handler.
const evListening = "worker.listening"

// RunWorker runs the worker until ctx ends (SIGTERM/SIGINT), then shuts
// down gracefully. It is a thin shell over package provisioner, which a
// host embeds the same way: New, Start, serve Handler, Stop. The HTTP
// server outlives Stop's graceful phase so /metrics stays scrapable while
// running jobs finish.
func RunWorker(ctx context.Context, c WorkerConfig, log zerolog.Logger) error {
	pc := workerConfig(c)
	pc.Logger = log
	w, err := provisioner.New(ctx, pc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		_ = w.Stop(context.Background())
		return fmt.Errorf("listen %s: %w", c.HTTPAddr, err)
	}
	httpSrv := httpapi.NewHTTPServer(w.Handler(), httpapi.DefaultTimeouts)
	go func() { _ = httpSrv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()
	if err := w.Start(ctx); err != nil {
		_ = w.Stop(context.Background())
		return err
	}
	log.Info().Str("evt", evListening).Str("http_addr", ln.Addr().String()).Msg("serving /healthz, /readyz, /metrics and River UI")
	<-ctx.Done()
	// Not ctx: it has ended, and Stop's wait is bounded by ShutdownTimeout.
	return w.Stop(context.Background())
}

// workerConfig is the command's settings as the library takes them.
// TestWorkerConfig_SameAsFromEnv keeps it equal to provisioner.FromEnv.
func workerConfig(c WorkerConfig) provisioner.Config {
	return provisioner.Config{
		DatabaseURL: c.DatabaseURL,
		CP: provisioner.CPConfig{BaseURL: c.CP.BaseURL, OrgID: c.CP.OrgID, SharedSecret: c.CP.SharedSecret,
			AdminToken: c.CP.AdminToken, AdminAPIKey: c.CP.AdminAPIKey, Timeout: c.CP.Timeout},
		Settings:        c.Settings,
		Options:         c.Options,
		Sweep:           c.Sweep,
		SweepEnabled:    c.SweepEnabled,
		UIUser:          c.UIUser,
		UIPass:          c.UIPass,
		ShutdownTimeout: c.ShutdownTimeout,
		Prune:           c.Prune,
	}
}
