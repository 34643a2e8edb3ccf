package app_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// deadStop leaves a workspace stopping behind a discarded terminate: the
// CP failed its one allowed attempt.
func deadStop(t *testing.T, env *jobtest.Env) (string, int64) {
	t.Helper()
	id := uuid.NewString()
	env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	env.CP.FailNext(cpfake.RouteTerminate, 500, 1)
	res := env.Terminate(id)
	env.WaitFor("terminate discarded", func() bool { return jobState(t, env, res.Job.ID) == rivertype.JobStateDiscarded })
	return id, res.Job.ID
}

func jobState(t *testing.T, env *jobtest.Env, id int64) rivertype.JobState {
	t.Helper()
	job, err := env.Insert.JobGet(context.Background(), id)
	require.NoError(t, err)
	return job.State
}

type retryOut struct {
	Retried []struct {
		JobID       int64  `json:"job_id"`
		Kind        string `json:"kind"`
		WorkspaceID string `json:"workspace_id"`
		From        string `json:"from_state"`
		State       string `json:"state"`
		MaxAttempts int    `json:"max_attempts"`
	} `json:"retried"`
}

func decodeRetry(t *testing.T, s string) retryOut {
	t.Helper()
	var out retryOut
	require.NoError(t, json.Unmarshal([]byte(s), &out), s)
	return out
}

func oneAttempt() jobtest.Config {
	return jobtest.Config{Settings: jobs.Settings{TerminateMaxAttempts: 1}}
}

func TestRetry_ByJobIDRequeuesDeadStopUntilStopped(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, oneAttempt())
	wsID, jobID := deadStop(t, env)

	out, err := enqueue(t, env, "retry", "--job-id", strconv.FormatInt(jobID, 10))
	require.NoError(t, err)
	got := decodeRetry(t, out)
	require.Len(t, got.Retried, 1)
	r := got.Retried[0]
	require.Equal(t, jobID, r.JobID)
	require.Equal(t, jobs.KindTerminate, r.Kind)
	require.Equal(t, wsID, r.WorkspaceID)
	require.Equal(t, "discarded", r.From)
	require.Equal(t, "available", r.State)
	require.Equal(t, 2, r.MaxAttempts, "a discarded job gets exactly one more attempt")

	ws := env.WaitStatus(wsID, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Equal(t, rivertype.JobStateCompleted, jobState(t, env, jobID))
}

func TestRetry_UnknownJobIDChangesNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, oneAttempt())
	_, jobID := deadStop(t, env)

	out, err := enqueue(t, env, "retry", "--job-id", strconv.FormatInt(jobID, 10), "--job-id", "987654321")
	require.Error(t, err)
	require.True(t, app.IsBadInput(err), "exit 2")
	require.Equal(t, "job 987654321 not found", err.Error())
	require.Empty(t, out)
	require.Equal(t, rivertype.JobStateDiscarded, jobState(t, env, jobID), "the real job was not retried either")
}

func TestRetry_ByKindAndStateHonoursLimit(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, oneAttempt())
	ws1, job1 := deadStop(t, env)
	ws2, job2 := deadStop(t, env)

	out, err := enqueue(t, env, "retry", "--kind", jobs.KindTerminate, "--state", "discarded", "--limit", "1")
	require.NoError(t, err)
	got := decodeRetry(t, out)
	require.Len(t, got.Retried, 1)
	require.Equal(t, min(job1, job2), got.Retried[0].JobID, "oldest first")
	env.WaitStatus(ws1, store.StatusStopped)
	require.Equal(t, rivertype.JobStateDiscarded, jobState(t, env, job2), "the limit held")

	out, err = enqueue(t, env, "retry", "--kind", jobs.KindTerminate, "--state", "discarded")
	require.NoError(t, err)
	got = decodeRetry(t, out)
	require.Len(t, got.Retried, 1)
	require.Equal(t, job2, got.Retried[0].JobID)
	env.WaitStatus(ws2, store.StatusStopped)

	out, err = enqueue(t, env, "retry", "--kind", jobs.KindTerminate, "--state", "discarded")
	require.NoError(t, err)
	require.Empty(t, decodeRetry(t, out).Retried, "nothing left to retry")
}

func TestRetry_RecordsTheRetryOnTheTimeline(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, oneAttempt())
	wsID, jobID := deadStop(t, env)
	_, err := enqueue(t, env, "retry", "--job-id", strconv.FormatInt(jobID, 10))
	require.NoError(t, err)
	events, err := store.MustFor("").Events(context.Background(), env.Pool, wsID)
	require.NoError(t, err)
	var found bool
	for _, ev := range events {
		if ev.Event == app.EvJobRetried && ev.JobID == jobID && ev.Actor == "enqueue" {
			found = true
		}
	}
	require.True(t, found, "timeline has %s for job %d", app.EvJobRetried, jobID)
}

func TestRetry_RejectsBadInput(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	cases := []struct {
		name string
		args []string
	}{
		{"no selector", nil},
		{"kind without state", []string{"--kind", jobs.KindTerminate}},
		{"state without kind", []string{"--state", "discarded"}},
		{"id and kind", []string{"--job-id", "1", "--kind", jobs.KindTerminate, "--state", "discarded"}},
		{"completed is not a retry", []string{"--kind", jobs.KindTerminate, "--state", "completed"}},
		{"unknown state", []string{"--kind", jobs.KindTerminate, "--state", "dead"}},
		{"limit zero", []string{"--kind", jobs.KindTerminate, "--state", "discarded", "--limit", "0"}},
		{"limit above River's page", []string{"--kind", jobs.KindTerminate, "--state", "discarded", "--limit", "10001"}},
		{"job id not a number", []string{"--job-id", "x"}},
		{"negative job id", []string{"--job-id", "-3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := enqueue(t, env, append([]string{"retry"}, tc.args...)...)
			require.Error(t, err)
			require.True(t, app.IsBadInput(err), "exit 2, got %v", err)
			require.Empty(t, out)
		})
	}
}
