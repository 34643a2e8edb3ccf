package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// ErrClockSkew is returned by CheckClockSkew when this process's clock
// and Postgres's differ by more than MaxClockSkew.
var ErrClockSkew = errors.New("jobs: clock skew between this worker and Postgres is unsafe")

// MaxClockSkew is how far this process's clock may differ from
// Postgres's. River stamps attempted_at with Postgres's clock when a
// worker fetches a job, and its rescuer (on the leader) rescues a running
// job once attempted_at is older than the leader's own clock minus
// RESCUE_AFTER. A leader S ahead of Postgres therefore rescues an attempt
// after RESCUE_AFTER − S, and an attempt may legitimately run for the
// largest job timeout: S must stay below RESCUE_AFTER − that timeout, or
// a second attempt starts beside one that is still calling the CP. Half
// that margin is allowed, leaving the rest for drift after the check and
// for the bounded hand-off that may outlive a job's timeout.
func MaxClockSkew(opts Options, s Settings) time.Duration {
	s = s.withDefaults()
	opts = opts.WithDefaults(s)
	return (opts.RescueAfter - max(s.ProvisionTimeout, s.TerminateTimeout)) / 2
}

// clockSamples is how many round trips MeasureClockSkew takes; the one
// with the shortest round trip bounds the error best.
const clockSamples = 3

// MeasureClockSkew estimates Postgres's clock minus now(): the database
// clock against the midpoint of the fastest of a few round trips.
func MeasureClockSkew(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) (time.Duration, error) {
	if now == nil {
		now = time.Now
	}
	var skew time.Duration
	best := time.Duration(-1)
	for range clockSamples {
		before := now()
		db, err := store.DBClock(ctx, pool)
		after := now()
		if err != nil {
			return 0, err
		}
		if rtt := after.Sub(before); best < 0 || rtt < best {
			best = rtt
			skew = db.Sub(before.Add(rtt / 2))
		}
	}
	return skew, nil
}

// CheckClockSkew measures the skew and returns it, with an error wrapping
// ErrClockSkew when its size exceeds MaxClockSkew(opts, s). The worker
// refuses to start on that error; an embedding host should too.
func CheckClockSkew(ctx context.Context, pool *pgxpool.Pool, opts Options, s Settings, now func() time.Time) (time.Duration, error) {
	skew, err := MeasureClockSkew(ctx, pool, now)
	if err != nil {
		return 0, err
	}
	if limit := MaxClockSkew(opts, s); skew.Abs() > limit {
		return skew, fmt.Errorf("%w: Postgres's clock is %s ahead of this worker's (negative: behind); the limit is %s, half of RESCUE_AFTER minus the largest job timeout: fix NTP, or raise RESCUE_AFTER",
			ErrClockSkew, skew.Round(time.Millisecond), limit)
	}
	return skew, nil
}
