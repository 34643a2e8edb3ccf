package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// What the skew check guards against, measured on River itself: the
// rescuer compares the leader's clock with attempted_at, which Postgres
// stamps. An attempt Postgres stamped "just now" looks RESCUE_AFTER + 1 s
// old to a leader that far ahead, and is rescued while it still runs.
// (The leader's clock cannot be moved in a test; moving attempted_at back
// by the same amount is the same comparison.)
func TestRescuer_LeaderAheadOfPostgresRescuesARunningAttempt(t *testing.T) {
	t.Parallel()
	rescueAfter := 20 * time.Second
	e := jobtest.New(t, jobtest.Config{NoStart: true, Options: jobs.Options{RescueAfter: rescueAfter}})
	ctx := context.Background()
	res, err := e.Insert.Insert(ctx, jobs.TerminateArgs{WorkspaceID: "00000000-0000-4000-8000-000000000001"}, nil)
	require.NoError(t, err)
	_, err = e.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_by = ARRAY['a-live-worker'],
		attempted_at = now() - $2::interval WHERE id = $1`, res.Job.ID, fmt.Sprintf("%d milliseconds", (rescueAfter+time.Second).Milliseconds()))
	require.NoError(t, err)

	e.Start() // becomes leader; the rescuer runs on its first tick

	e.WaitFor("the running attempt to be rescued", func() bool {
		return jobState(t, e, res.Job.ID).State != rivertype.JobStateRunning
	})
}

func TestCheckClockSkew_RefusesAWorkerClockFarFromPostgres(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	opts := jobs.Options{RescueAfter: 3 * time.Minute}
	s := jobs.Settings{ProvisionTimeout: 2 * time.Minute, TerminateTimeout: 2 * time.Minute}
	limit := jobs.MaxClockSkew(opts, s)
	require.Equal(t, 30*time.Second, limit, "half of RESCUE_AFTER minus the largest job timeout")
	for _, tc := range []struct {
		name   string
		offset time.Duration // this worker's clock minus the real one
		ok     bool
	}{
		{"in step", 0, true},
		{"a few seconds ahead", 5 * time.Second, true},
		{"ahead past the margin", 2 * time.Minute, false},
		{"behind past the margin", -2 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := func() time.Time { return time.Now().Add(tc.offset) }

			skew, err := jobs.CheckClockSkew(context.Background(), e.Pool, opts, s, now)

			require.InDelta(t, (-tc.offset).Seconds(), skew.Seconds(), 2, "the measured skew")
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, jobs.ErrClockSkew)
			require.ErrorContains(t, err, "RESCUE_AFTER")
		})
	}
}
