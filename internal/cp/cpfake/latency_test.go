package cpfake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// A latency range is drawn per request from the seeded RNG: within
// [Latency, LatencyMax], not one fixed value, and the same sequence for
// the same seed, so a run can be repeated.
func TestLatency_RangeIsASeededDrawPerRequest(t *testing.T) {
	t.Parallel()
	opts := Options{Latency: 50 * time.Millisecond, LatencyMax: 200 * time.Millisecond, Seed: 7}
	a, b := New(opts), New(opts)
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := a.latency()
		require.Equal(t, d, b.latency(), "same seed, same draws")
		require.GreaterOrEqual(t, d, opts.Latency)
		require.LessOrEqual(t, d, opts.LatencyMax)
		seen[d] = true
	}
	require.Greater(t, len(seen), 900, "a draw per request, not one value")
	opts.Seed = 8
	require.NotEqual(t, New(opts).latency(), New(Options{Latency: 50 * time.Millisecond, LatencyMax: 200 * time.Millisecond, Seed: 7}).latency())
	// Without a range the latency is Latency, as before.
	require.Equal(t, 30*time.Millisecond, New(Options{Latency: 30 * time.Millisecond}).latency())
	require.Equal(t, 30*time.Millisecond, New(Options{Latency: 30 * time.Millisecond, LatencyMax: 10 * time.Millisecond}).latency())
}

// OnArrival fires when a provision arrives, with the body's workspace id,
// before its latency: here the latency is an hour, and the arrival is
// seen while the request still waits (then it is given up). Other routes
// report the path's workspace id.
func TestOnArrival_FiresBeforeTheLatency(t *testing.T) {
	t.Parallel()
	type arrival struct {
		route, ws string
		timed     bool
	}
	got := make(chan arrival, 4)
	s, c := setup(t, DialectFull, Options{Latency: time.Hour, OnArrival: func(route, ws string, at time.Time) {
		got <- arrival{route, ws, !at.IsZero()}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Start(ctx, cp.ProvisionRequest{WorkspaceID: ws1, Runtime: "r"})
		errc <- err
	}()
	require.Equal(t, arrival{RouteProvision, ws1, true}, <-got)
	cancel() // the request is still in its hour of latency
	require.True(t, errors.Is(<-errc, context.Canceled))
	require.Zero(t, s.Stats().Launched, "nothing acted: the arrival came before the latency")

	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { errc <- c.Stop(ctx2, ws1, "i-0123456789abcdef0") }()
	require.Equal(t, arrival{RouteTerminate, ws1, true}, <-got)
	cancel2()
	<-errc
}
