package bench

import "time"

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
	SweepN         int           // workspaces and CP instances (figure 6)
}

// FullScale is the scale.
func FullScale() Scale {
	return Scale{
		EnqueueSamples: 1000, BulkN: 10_000, Cycles: 2000, ThroughputRuns: 3,
		PickupSamples: 150, PickupGap: 170 * time.Millisecond, IdleWindow: 3 * time.Second,
		SlowN: 2000, SlowLatency: 200 * time.Millisecond, SweepN: 100_000,
	}
}

// QuickScale runs every figure's code path with tiny N: it keeps the
// bench from rotting, and its numbers mean nothing.
func QuickScale() Scale {
	return Scale{
		EnqueueSamples: 10, BulkN: 30, Cycles: 10, ThroughputRuns: 3,
		PickupSamples: 3, PickupGap: 120 * time.Millisecond, IdleWindow: 1200 * time.Millisecond,
		SlowN: 10, SlowLatency: 10 * time.Millisecond, SweepN: 300,
	}
}
