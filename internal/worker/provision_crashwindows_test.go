package worker_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// loseFirstProvisionAnswer makes the CP launch on the first provision and
// then drop the connection: it acted, the worker does not know.
func loseFirstProvisionAnswer(e *jobtest.Env) {
	e.CP.SetFaults(cpfake.Faults{LostAnswer: 1})
	e.CP.SetProvisionHook(func(string, cp.Instance) {
		e.CP.SetFaults(cpfake.Faults{}) // only this request's answer is lost
		e.CP.SetProvisionHook(nil)
	})
}

// After a lost answer the retry asks the CP for the workspace's instances
// and adopts the one the first attempt launched, even from a CP that
// ignores Idempotency-Key. Pins the list-and-adopt step in
// ProvisionWorker.launch (without it the retry launches a duplicate).
func TestProvision_RetryAfterLostAnswerAdoptsInsteadOfLaunching(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{IgnoreIdempotency: true}})
	loseFirstProvisionAnswer(e)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})

	ws := e.WaitStatus(id, store.StatusRunning)
	st := e.CP.Stats()
	require.Equal(t, 1, st.Launched)
	require.Zero(t, st.Duplicates)
	live := e.CP.Live(id)
	require.Len(t, live, 1)
	require.Equal(t, live[0].InstanceID, ws.InstanceID)
	require.Contains(t, eventNames(t, e, id), "provision.adopted")
	lists := requestsOf(e.CP, cpfake.RouteList)
	require.NotEmpty(t, lists)
	require.Contains(t, lists[0].Query, "workspace_id="+id)
}

// When the list before a retry fails, the worker does not launch ("unknown
// is not empty"); a later attempt lists and adopts. Pins the error branch
// of the list in ProvisionWorker.launch.
func TestProvision_RetryDoesNotLaunchWhenListFails(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{IgnoreIdempotency: true}})
	loseFirstProvisionAnswer(e)
	e.CP.FailNext(cpfake.RouteList, 503, 2)
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id})

	e.WaitStatus(id, store.StatusRunning)
	require.Len(t, requestsOf(e.CP, cpfake.RouteProvision), 1)
	require.Len(t, requestsOf(e.CP, cpfake.RouteList), 3)
	require.Zero(t, e.CP.Stats().Duplicates)
}

// Every attempt of a generation sends the same Idempotency-Key,
// <workspace_id>:<generation>, built from the row and not from the job or
// the process, and the next generation a new one. Pins the key's format
// in ProvisionWorker.launch (a per-attempt key would let a CP that
// honours keys launch twice).
func TestProvision_IdempotencyKeyIsStableAcrossAttempts(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	e.CP.FailNext(cpfake.RouteProvision, 503, 2)
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	var keys []string
	for _, r := range requestsOf(e.CP, cpfake.RouteProvision) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
	}
	require.Equal(t, []string{id + ":1", id + ":1", id + ":1", id + ":2"}, keys)
}
