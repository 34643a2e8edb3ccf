package jobs_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"
)

// RESCUE_AFTER must exceed the largest job timeout, zero timeouts read as
// their defaults (2m); the worker's settings check and the worker client
// both ask CheckRescueAfter.
func TestCheckRescueAfter(t *testing.T) {
	slowStop := jobs.Settings{ProvisionTimeout: time.Minute, TerminateTimeout: 5 * time.Minute}
	for _, tc := range []struct {
		name        string
		rescueAfter time.Duration
		s           jobs.Settings
		ok          bool
	}{
		{"defaults: equal to the timeout", 2 * time.Minute, jobs.Settings{}, false},
		{"defaults: just past it", 2*time.Minute + time.Nanosecond, jobs.Settings{}, true},
		{"the default rescue-after", jobs.DefaultRescueAfter(jobs.DefaultSettings()), jobs.Settings{}, true},
		{"the larger timeout counts", 3 * time.Minute, slowStop, false},
		{"past the larger timeout", 5*time.Minute + time.Second, slowStop, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := jobs.CheckRescueAfter(tc.rescueAfter, tc.s)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "RESCUE_AFTER")
			require.ErrorContains(t, err, "must exceed")
		})
	}
}
