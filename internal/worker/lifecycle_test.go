package worker_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

func requestsOf(f *cpfake.Server, route string) []cpfake.Request {
	var out []cpfake.Request
	for _, r := range f.Requests() {
		if r.Route == route {
			out = append(out, r)
		}
	}
	return out
}

func eventNames(t *testing.T, e *jobtest.Env, id string) []string {
	t.Helper()
	evs, err := store.MustFor("").Events(context.Background(), e.Pool, id)
	require.NoError(t, err)
	var names []string
	for _, ev := range evs {
		names = append(names, ev.Event)
	}
	return names
}

func TestProvision_RecordsInstanceFromOneAuthenticatedCall(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Tier: 2,
		PlatformURL: "https://platform.example", Env: map[string]string{"TOKEN": "v"}})

	ws := e.WaitStatus(id, store.StatusRunning)

	provisions := requestsOf(e.CP, cpfake.RouteProvision)
	require.Len(t, provisions, 1)
	req := provisions[0]
	require.Equal(t, "Bearer "+jobtest.SharedSecret, req.Header.Get("Authorization"))
	require.Equal(t, jobtest.AdminToken, req.Header.Get("X-Molecule-Admin-Token"))
	require.Equal(t, id+":1", req.Header.Get("Idempotency-Key"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(req.Body, &body))
	require.Equal(t, map[string]any{"org_id": jobtest.OrgID, "workspace_id": id, "runtime": "python",
		"tier": float64(2), "platform_url": "https://platform.example", "env": map[string]any{"TOKEN": "v"}}, body)

	live := e.CP.Live(id)
	require.Len(t, live, 1)
	require.Equal(t, live[0].InstanceID, ws.InstanceID)
	require.Subset(t, eventNames(t, e, id), []string{"provision.requested", "provision.start", "provision.ec2_started"})
}

func TestTerminate_DeletesRecordedInstanceThenStops(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	inst := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID

	e.Terminate(id)
	ws := e.WaitStatus(id, store.StatusStopped)

	require.Empty(t, ws.InstanceID)
	deletes := requestsOf(e.CP, cpfake.RouteTerminate)
	require.Len(t, deletes, 1)
	q, err := url.ParseQuery(deletes[0].Query)
	require.NoError(t, err)
	require.Equal(t, inst, q.Get("instance_id"))
	require.Equal(t, "/cp/workspaces/"+id, deletes[0].Path)
	require.Empty(t, e.CP.Live(id))
	require.Contains(t, eventNames(t, e, id), "provision.ec2_stopped")
}

func TestTerminate_RetriesUntil2xxAndNeverStopsEarly(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	e.CP.FailNext(cpfake.RouteTerminate, 500, 3)
	res := e.Terminate(id)

	// While the job has not completed, the row is still stopping. The row
	// is read first: it leaves stopping in the transaction that completes
	// the job, so a job read after it that is not completed proves the
	// row was read before that commit.
	e.WaitFor("the terminate to complete", func() bool {
		ws := e.Workspace(id)
		job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
		require.NoError(t, err)
		if job.State != rivertype.JobStateCompleted {
			require.Equal(t, store.StatusStopping, ws.Status, "row left stopping before the CP confirmed")
			require.NotEmpty(t, ws.InstanceID)
		}
		return job.State == rivertype.JobStateCompleted
	})
	ws := e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)

	job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, 4, job.Attempt)
	require.Len(t, job.Errors, 3)
	require.Contains(t, job.Errors[0].Error, "500")
	require.Len(t, requestsOf(e.CP, cpfake.RouteTerminate), 4)
	require.Empty(t, e.CP.Live(id))
}
