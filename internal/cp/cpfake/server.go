package cpfake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is a Fake listening on a TCP address, like httptest.Server.
type Server struct {
	*Fake
	URL string // http://host:port, no trailing slash

	srv  *http.Server
	done chan struct{} // closed when Serve returned
}

// Start listens on 127.0.0.1:0 and serves a new Fake. It panics if it
// cannot listen (as httptest.NewServer does): it is for tests.
func Start(opts Options) *Server {
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		panic(fmt.Sprintf("cpfake: %v", err))
	}
	return s
}

// Listen serves a new Fake on addr (cmd/cpsim uses it with a fixed port).
func Listen(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := New(opts)
	s := &Server{
		Fake: f,
		URL:  "http://" + ln.Addr().String(),
		srv:  &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close drops every connection at once, releasing stalled requests.
func (s *Server) Close() {
	s.Fake.Close()
	_ = s.srv.Close()
	<-s.done
}

// Shutdown stops accepting, releases stalled requests and waits for the
// others to finish until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Fake.Close()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}
