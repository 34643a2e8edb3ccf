package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/sweep"
	"github.com/molecule-ai/provision-worker/jobs"
)

// One 404 from the list (a proxy, a CP deploy) is not a CP without the
// endpoint: a stop with no recorded id must retry it and confirm, not
// finish without looking.
func TestTerminate_TransientListNotFoundIsRetriedNotReadAsUnsupported(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	inst := e.OldInstance(id)
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped})
	e.CP.FailNext(cpfake.RouteList, 404, 1)
	_, err := e.Insert.Insert(context.Background(), jobs.TerminateArgs{WorkspaceID: id}, nil)
	require.NoError(t, err)

	e.WaitStatus(id, store.StatusStopped)

	require.False(t, liveIDs(e)[inst], "the stop finished without confirming on one 404")
	require.NotContains(t, e.Logs.String(), `"evt":"sweep.cp_list_unsupported"`)
}

// A CP gateway's 404s at start-up decided "no list endpoint"; once the
// list answers again, a re-probe undoes that: a stop with no recorded id
// finds and terminates the instance a lost provision answer launched, and
// the sweep's CP side runs again. The decision used to last until restart.
func TestTerminate_ConfirmsAgainOnceTheListAnswersAfterStartupNotFounds(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true, Settings: jobs.Settings{ListUnsupportedReprobe: time.Nanosecond}})
	e.CP.FailNext(cpfake.RouteList, 404, 3)
	var res sweep.Result
	for range 3 {
		res = sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	}
	require.Equal(t, "unsupported", res.CPSide, "the 404s decided")
	id := uuid.NewString()
	b := e.OldInstance(id) // launched by a provision whose answer was lost
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped})
	_, err := e.Insert.Insert(context.Background(), jobs.TerminateArgs{WorkspaceID: id}, nil)
	require.NoError(t, err)

	e.Start()

	e.WaitStatus(id, store.StatusStopped)
	require.False(t, liveIDs(e)[b], "row stopped while its instance runs")
	res = sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.NotEqual(t, "unsupported", res.CPSide)
}
