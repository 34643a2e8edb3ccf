package jobs_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// One 404 from the list (a proxy, a CP deploy) is not a CP without the
// endpoint: a stop with no recorded id must retry it and confirm, not
// finish without looking.
func TestTerminate_TransientListNotFoundIsRetriedNotReadAsUnsupported(t *testing.T) {
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
