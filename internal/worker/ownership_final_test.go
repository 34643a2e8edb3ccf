package worker_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A provision whose job is cancelled (or discarded) while the CP answers
// has no retry to adopt the instance: the refused completion must hand it
// to an instance_terminate instead of dropping it (invariant "every
// instance owned", docs/design.md).
func TestProvision_CancelledWhileCPAnswersHandsInstanceToInstanceTerminate(t *testing.T) {
	for _, state := range []rivertype.JobState{rivertype.JobStateCancelled, rivertype.JobStateDiscarded} {
		t.Run(string(state), func(t *testing.T) {
			e := jobtest.New(t, jobtest.Config{})
			gate := gateProvisions(t, e, 1)
			id := uuid.NewString()
			res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
			inst := gate.next(t)

			setJobState(t, e, res.Job.ID, state, 0)
			gate.open()

			e.WaitFor("the stray to be terminated", func() bool {
				return len(e.CP.Live(id)) == 0 && len(instanceTerminates(t, e, inst.InstanceID)) > 0
			})
			ws := e.Workspace(id)
			require.Empty(t, ws.InstanceID, "a job that did not complete recorded its instance")
			require.Equal(t, store.StatusProvisioning, ws.Status)
			require.Contains(t, eventNames(t, e, id), "provision.stray_instance")
		})
	}
}

// A provision that arrives while a stop is under way asks for the next
// generation: its runtime, tier and env must reach that generation's CP
// request rather than be dropped.
func TestProvision_WhileStoppingCarriesItsRequestToTheNextGeneration(t *testing.T) {
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Tier: 1})
	e.Terminate(id) // never attempted: the provision is cancelled, the row stops
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "node", Tier: 3,
		Env: map[string]string{"MODE": "second"}})
	require.Equal(t, jobs.ActionAfterStop, res.Action)

	e.Start()
	ws := e.WaitStatus(id, store.StatusRunning)
	require.EqualValues(t, 2, ws.Generation)
	provisions := requestsOf(e.CP, "provision")
	require.Len(t, provisions, 1, "generation 1 was cancelled before any attempt")
	body := string(provisions[0].Body)
	require.Contains(t, body, `"runtime":"node"`)
	require.Contains(t, body, `"tier":3`)
	require.Contains(t, body, `"MODE":"second"`)
}
