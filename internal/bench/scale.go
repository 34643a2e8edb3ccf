package bench

import "time"

// soakWorkers per queue: 200 requests/s at a mean CP latency of 125 ms keep
// 25 provisions (and 25 terminates) in flight by Little's law, more than
// the production default of 20 can hold; 40 leaves headroom, as an
// operator sizing PROVISION_WORKERS for that load would.
const soakWorkers = 40

// Scale sizes every figure. FullScale is what the issue asks for;
// QuickScale keeps `make test`'s smoke run to seconds.
type Scale struct {
	EnqueueSamples int           // transactions per variant (figure 1)
	BulkN          int           // provisions in one transaction (figure 2)
	Cycles         int           // provision→terminate cycles (figure 3)
	ThroughputRuns int           // three-way comparisons, judged on the median (figure 3)
	PickupSamples  int           // requests per setting (figure 4)
	PickupGap      time.Duration // mean gap between light-load requests
	IdleWindow     time.Duration // how long an idle worker's load is counted
	SlowN          int           // provisions against the slow CP (figure 5)
	SlowLatency    time.Duration // the slow CP's latency per call
	SweepNs        []int         // fleet sizes, each one sweep (figure 6)

	// Soak (figure 7): SoakRate provisions per second (each followed by its
	// terminate once it ran) for SoakDuration, after SoakWarmUp at the
	// same rate, against a CP taking SoakLatencyMin–Max per call.
	SoakDuration                   time.Duration
	SoakWarmUp                     time.Duration // ≥ 2 s: River's leader starts its maintenance services up to 1 s after its election
	SoakRate                       float64
	SoakLatencyMin, SoakLatencyMax time.Duration
	SoakWorkers                    int           // provision and terminate workers each
	SoakDepthEvery                 time.Duration // queue depth sampling period
	SoakDrainTimeout               time.Duration // how long the queue may take to empty after the load
}

// FullScale is the scale.
func FullScale() Scale {
	return Scale{
		EnqueueSamples: 1000, BulkN: 10_000, Cycles: 2000, ThroughputRuns: 3,
		PickupSamples: 150, PickupGap: 170 * time.Millisecond, IdleWindow: 3 * time.Second,
		SlowN: 2000, SlowLatency: 200 * time.Millisecond, SweepNs: []int{10_000, 100_000, 1_000_000},
		SoakDuration: 2 * time.Minute, SoakWarmUp: 3 * time.Second, SoakRate: 200,
		SoakLatencyMin: 50 * time.Millisecond, SoakLatencyMax: 200 * time.Millisecond,
		SoakWorkers: soakWorkers, SoakDepthEvery: 5 * time.Second, SoakDrainTimeout: 3 * time.Minute,
	}
}

// QuickScale runs every figure's code path with tiny N: it keeps the
// bench from rotting, and its numbers mean nothing.
func QuickScale() Scale {
	return Scale{
		EnqueueSamples: 10, BulkN: 30, Cycles: 10, ThroughputRuns: 3,
		PickupSamples: 3, PickupGap: 120 * time.Millisecond, IdleWindow: 1200 * time.Millisecond,
		SlowN: 10, SlowLatency: 10 * time.Millisecond, SweepNs: []int{300, 3000},
		SoakDuration: 3 * time.Second, SoakWarmUp: 2 * time.Second, SoakRate: 50,
		SoakLatencyMin: 5 * time.Millisecond, SoakLatencyMax: 20 * time.Millisecond,
		SoakWorkers: soakWorkers, SoakDepthEvery: 500 * time.Millisecond, SoakDrainTimeout: time.Minute,
	}
}
