package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// latencyCP serves an in-process fake CP whose every call takes a random
// latency in [lo, hi], drawn per request from the fake's seeded RNG
// (cpfake.Options.LatencyMax), and tells onProvision when a provision
// request arrives, before its latency (cpfake.Options.OnArrival), so
// pickup is measured to the CP receiving the call as in figure 4. The
// bench owns the HTTP server, so it can drop idle connections before
// counting goroutines.
type latencyCP struct {
	fake *cpfake.Fake
	srv  *http.Server
	api  *cp.Client
	done chan struct{}
}

func startLatencyCP(lo, hi time.Duration, onProvision func(ws string, at time.Time)) (*latencyCP, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the fake CP: %w", err)
	}
	opts := cpfake.Options{Latency: lo, LatencyMax: hi}
	if onProvision != nil {
		opts.OnArrival = func(route, ws string, at time.Time) {
			if route == cpfake.RouteProvision {
				onProvision(ws, at)
			}
		}
	}
	fake := cpfake.New(fakeOptions(opts))
	l := &latencyCP{fake: fake, done: make(chan struct{})}
	l.srv = &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(ln)
	}()
	l.api, err = newCPClient("http://" + ln.Addr().String())
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// dropIdleConns closes the connections that wait for a next request
// (each holds goroutines on both ends) and lets new ones be kept alive
// again: counted before and after a soak, goroutines then show leaks, not
// how many connections the transport happened to keep.
func (l *latencyCP) dropIdleConns() {
	l.srv.SetKeepAlivesEnabled(false)
	l.srv.SetKeepAlivesEnabled(true)
}

// Close stops the server and drops every connection.
func (l *latencyCP) Close() {
	l.fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		_ = l.srv.Close()
	}
	<-l.done
}
