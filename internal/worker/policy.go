package worker

import (
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"
)

// policy gives a kind its River timeout and retry schedule, the same way
// for every kind: a timeout that outlives the CP client's (invariant "no
// transaction across a CP call") and capped, jittered exponential
// backoff (invariant "no silent stop"; both in docs/design.md). Stops and
// provisions differ only in which settings they read.
type policy[T river.JobArgs] struct {
	river.WorkerDefaults[T]
	deps *Deps
	stop bool // a terminate kind: TERMINATE_TIMEOUT and TERMINATE_BACKOFF_CAP
}

// Timeout is the kind's River job timeout.
func (p *policy[T]) Timeout(*river.Job[T]) time.Duration {
	if p.stop {
		return p.deps.Settings.TerminateTimeout
	}
	return p.deps.Settings.ProvisionTimeout
}

// NextRetry is capped, jittered exponential backoff.
func (p *policy[T]) NextRetry(job *river.Job[T]) time.Time {
	s := p.deps.Settings
	maxDelay := s.ProvisionBackoffCap
	if p.stop {
		maxDelay = s.TerminateBackoffCap
	}
	return time.Now().Add(backoff(job.Attempt, s.BackoffBase, maxDelay))
}

// backoff is capped exponential backoff with jitter: half the delay is
// fixed, half random, so thousands of stops failing together during a CP
// outage do not retry in lockstep when it recovers.
func backoff(attempt int, base, maxDelay time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}
