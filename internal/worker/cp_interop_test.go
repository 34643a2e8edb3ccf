package worker_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// TestTerminate_404ConfirmedAgainstAPlainGoCP is issue 11's leak: a CP
// that writes an empty list page as {"instances":null} made every retried
// terminate fail with "malformed list body", so a 404 could never be
// confirmed and the row sat in stopping for the whole budget.
func TestTerminate_404ConfirmedAgainstAPlainGoCP(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{Dialect: cpfake.DialectPlainGo}})
	id := uuid.NewString()
	seedRow{id: id, status: store.StatusRunning, desired: store.DesiredRunning, instanceID: randomInstanceID()}.insert(t, e)

	stop := e.Terminate(id)

	e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, jobState(t, e, stop.Job.ID).Errors, "the null page is an empty page, not an error")
	require.Len(t, requestsOf(e.CP, cpfake.RouteList), 1)
}

// TestLifecycle_AgainstAPlainGoCP runs a provision and a stop against a CP
// that leaves out every optional field and answers the DELETE with 204.
func TestLifecycle_AgainstAPlainGoCP(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{Fake: cpfake.Options{Dialect: cpfake.DialectPlainGo}})
	id := uuid.NewString()
	ws := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	require.NotEmpty(t, ws.InstanceID)

	e.Terminate(id)
	ws = e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Empty(t, e.CP.Live(id))
}

// TestTerminate_StuckStreakIsLoggedOnceAndKeepsRetrying: a stop that fails
// the same way TerminateStuckAfter times in a row says so once, at error
// level and in provisioner_terminate_stuck_total, and still finishes when
// the CP recovers.
func TestTerminate_StuckStreakIsLoggedOnceAndKeepsRetrying(t *testing.T) {
	t.Parallel()
	settings := jobtest.FastSettings()
	settings.TerminateStuckAfter = 3
	e := jobtest.New(t, jobtest.Config{Settings: settings})
	id := uuid.NewString()
	ws := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	e.CP.FailNext(cpfake.RouteTerminate, 502, 7)
	stop := e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	require.Len(t, jobState(t, e, stop.Job.ID).Errors, 7)
	lines := linesWith(e.Logs.String(), `"evt":"terminate.stuck"`)
	require.Len(t, lines, 1, "one event per streak, not one per attempt")
	require.Contains(t, lines[0], `"level":"error"`)
	require.Contains(t, lines[0], `"attempt":3`)
	require.Contains(t, lines[0], `"instance_id":"`+ws.InstanceID+`"`)
	require.Contains(t, lines[0], "status 502")
	require.Equal(t, 1.0, testutil.ToFloat64(e.Metrics.TerminateStuck.WithLabelValues(jobs.KindTerminate)))
}

func linesWith(logs, needle string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, needle) {
			out = append(out, l)
		}
	}
	return out
}
