package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A 503 with Retry-After is honoured with a snooze (the attempt is given
// back) and the stop still completes once the CP answers.
func TestTerminate_RetryAfterSnoozesWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{SnoozeCap: 50 * time.Millisecond}})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	e.CP.FailNextRetryAfter(cpfake.RouteTerminate, 503, 2, time.Second)
	res := e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, job.State)
	require.Equal(t, 1, job.Attempt, "a Retry-After snooze must give the attempt back")
	require.Equal(t, 2, snoozeCount(t, job))
}

// Snoozes are bounded: past MaxSnoozes a Retry-After answer spends an
// attempt like any failure, so a CP that always says "later" still ends
// in a discarded job someone is alerted to (invariant "no silent stop",
// docs/design.md).
func TestTerminate_RetryAfterSnoozesAreBounded(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{SnoozeCap: 20 * time.Millisecond, MaxSnoozes: 2}})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	e.CP.FailNextRetryAfter(cpfake.RouteTerminate, 503, 4, time.Second)
	res := e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, 2, snoozeCount(t, job))
	require.Equal(t, 3, job.Attempt, "two snoozes, then two failures that spend attempts, then success")
}

func snoozeCount(t *testing.T, job *rivertype.JobRow) int {
	t.Helper()
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	require.NoError(t, json.Unmarshal(job.Metadata, &m))
	return m.Snoozes
}
