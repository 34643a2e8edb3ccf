package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A provision discarded for a hook is re-run by the sweep only until
// EnvHookRerunLimit after its generation began; then it is left
// provisioning (never failed) and reported loudly every sweep. Re-runs
// count against MaxTerminations. (Review 13, finding 9.)
func TestEnvHook_SweepStopsReRunningPastTheLimitAndCountsReRunsAgainstTheCap(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{
		Settings: jobs.Settings{ProvisionMaxAttempts: 1, MaxSnoozes: 1},
		Env: func(context.Context, string) (map[string]string, error) {
			return nil, errors.New(hookSecret)
		}})
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, id := range ids {
		job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
		require.Equal(t, rivertype.JobStateDiscarded, finalJob(t, e, job.ID).State)
	}
	age := func(id, interval string) {
		_, err := e.Pool.Exec(context.Background(),
			`UPDATE workspaces SET status_changed_at = now() - $2::interval WHERE id = $1`, id, interval)
		require.NoError(t, err)
	}
	age(ids[0], "25 hours") // past the limit
	age(ids[1], "2 hours")
	age(ids[2], "2 hours")
	s := testSweep()
	s.MaxTerminations = 1
	res := sweepNow(t, e, s, jobs.OrphanSweepArgs{})
	require.Equal(t, map[string]int{"provision_env_hook_gave_up": 1, "provision_env_hook_discarded": 2}, res.Orphans)
	require.Equal(t, 1, res.Retried, "one re-run within the cap of 1")
	require.Equal(t, 1, res.SkippedByCap)
	require.Zero(t, res.MarkedFailed)
	for _, id := range ids {
		require.Equal(t, store.StatusProvisioning, e.Workspace(id).Status)
	}
	require.Equal(t, 1, strings.Count(e.Logs.String(), `"sweep.env_hook_gave_up"`))
	for _, j := range e.JobsOfKind(jobs.KindProvision) {
		if strings.Contains(string(j.EncodedArgs), ids[0]) {
			require.Equal(t, rivertype.JobStateDiscarded, j.State, "past the limit: not re-run")
		}
	}
}
