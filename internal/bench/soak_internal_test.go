package bench

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The verdict line names every reason a soak failed, a queue that did
// not drain first, and passes only when every judged line is met.
func TestSoakVerdict_NamesEveryReason(t *testing.T) {
	t.Parallel()
	lines := func(ratio, heap, gor float64) []Result {
		return []Result{
			{"soak_pickup_p99_last_vs_first_ratio", ratio, "x"}, {"soak_pickup_first_p99", 100, "ms"}, {"soak_pickup_last_p99", 100 * ratio, "ms"},
			{"soak_heap_growth_mb", heap, "MB"}, {"soak_heap_noise_mb", 4, "MB"},
			{"soak_goroutines_growth", gor, "count"}, {"soak_goroutines_noise", 5, "count"},
			{"soak_provisions_done_per_s", 68, "/s"}, {"soak_terminates_done_per_s", 67, "/s"}, {"soak_requests_per_s", 200, "/s"},
		}
	}
	require.Regexp(t, `^PASS \(pickup p99 last/first 1.20 <= 1.5, heap \+1.0 MB <= 4.0, goroutines \+0 <= 5\)$`, soakVerdict(lines(1.2, 1, 0), nil))

	v := soakVerdict(lines(2, 5, 6), errors.New("drain: after 3m0s, 12292 of 24600 provisions"))
	require.Regexp(t, `^FAIL: queue did not drain \(drain: after 3m0s, 12292 of 24600 provisions; provisions done at 68/s, terminates at 67/s, offered 200/s\); `+
		`pickup p99 last/first 2.00 > 1.5 \(200 ms vs 100 ms\); heap grew 5.0 MB > 4.0 MB noise; goroutines grew 6 > 5 noise$`, v)

	// No pickups in a window (NaN ratio) is no pass.
	require.Regexp(t, `^FAIL: pickup p99 last/first NaN`, soakVerdict(lines(math.NaN(), 0, 0), nil))
}

// A window without samples is no evidence of a flat p99, and a request
// never picked up counts with what it waited, not as absent.
func TestSoakWindows_CountUnpickedAndRefuseEmpty(t *testing.T) {
	t.Parallel()
	require.True(t, math.IsNaN(p99Ratio([]time.Duration{time.Millisecond}, nil)))
	require.True(t, math.IsNaN(p99Ratio(nil, []time.Duration{time.Millisecond})))
	require.Equal(t, 2.0, p99Ratio([]time.Duration{time.Millisecond}, []time.Duration{2 * time.Millisecond}))

	t0 := time.Now()
	s := &soak{t0: t0, pickups: []pickupSample{{at: time.Second, d: 10 * time.Millisecond}, {at: 9 * time.Second, d: 20 * time.Millisecond}}}
	s.pending.Store("never", t0.Add(8*time.Second)) // committed at 8 s, never reached the CP
	first, last := s.windows(10*time.Second, t0.Add(68*time.Second))
	require.Equal(t, []time.Duration{10 * time.Millisecond}, first)
	require.ElementsMatch(t, []time.Duration{20 * time.Millisecond, time.Minute}, last)
}
