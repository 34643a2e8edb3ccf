package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// latencyCP serves an in-process fake CP whose every call takes a random
// latency in [lo, hi], drawn per request, before the fake acts: the fake's
// own Latency option is one fixed value. It also tells onProvision when a
// provision request arrives, before its latency, so pickup is measured to
// the CP receiving the call as in figure 4. The bench owns the HTTP
// server, so it can drop idle connections before counting goroutines.
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
	fake := cpfake.New(fakeOptions(cpfake.Options{}))
	l := &latencyCP{fake: fake, done: make(chan struct{})}
	l.srv = &http.Server{Handler: l.delay(fake.Handler(), lo, hi, onProvision), ReadHeaderTimeout: 10 * time.Second}
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

func (l *latencyCP) delay(next http.Handler, lo, hi time.Duration, onProvision func(string, time.Time)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if onProvision != nil && r.Method == http.MethodPost && r.URL.Path == "/cp/workspaces/provision" {
			at := time.Now()
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, "read body", http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct {
				WorkspaceID string `json:"workspace_id"`
			}
			if json.Unmarshal(body, &req) == nil {
				onProvision(req.WorkspaceID, at)
			}
		}
		d := lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
		if err := sleepCtx(r.Context(), d); err != nil {
			return // the client gave up or the server is closing
		}
		next.ServeHTTP(w, r)
	})
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
