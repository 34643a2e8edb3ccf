package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// launchThenRetryAfter launches, then answers as a proxy in front of the
// CP might: 503 with a long Retry-After. The attempt snoozes, River gives
// the attempt back, and the job sits at attempt 0 with an instance out.
type launchThenRetryAfter struct{ cp.API }

func (c launchThenRetryAfter) Start(ctx context.Context, req cp.ProvisionRequest) (cp.Instance, error) {
	if _, err := c.API.Start(ctx, req); err != nil {
		return cp.Instance{}, err
	}
	return cp.Instance{}, &cp.Error{Op: "provision", StatusCode: 503, RetryAfter: time.Hour, Class: cp.ClassRetry}
}

func TestRequestTerminate_WaitsForSnoozedFirstAttemptInsteadOfCancellingIt(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Settings: jobs.Settings{SnoozeCap: time.Hour},
		CP: func(e *jobtest.Env) cp.API { return launchThenRetryAfter{e.API} }})
	e.Start()
	id := uuid.NewString()
	prov := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	e.WaitFor("the first attempt to snooze", func() bool {
		j := jobState(t, e, prov.ID)
		return j.State == rivertype.JobStateScheduled
	})
	snoozed := jobState(t, e, prov.ID)
	require.Zero(t, snoozed.Attempt, "River gave the snoozed attempt back")
	require.Len(t, e.CP.Live(id), 1, "the snoozed attempt launched an instance")

	e.Terminate(id)

	e.WaitStatus(id, store.StatusStopped)
	require.NotEqual(t, rivertype.JobStateCancelled, jobState(t, e, prov.ID).State,
		"a provision that may have launched was cancelled without being waited for")
	require.Contains(t, e.Logs.String(), `"evt":"terminate.wait_provision"`)
	require.Empty(t, e.CP.Live(id))
}
