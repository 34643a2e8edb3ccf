package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// upperCaseEcho is a CP (or client) that answers the list with upper-case
// workspace ids: a UUID's case carries no meaning, and the CP contract
// (docs/design.md#cp-contract) does not promise which one comes back.
type upperCaseEcho struct{ cp.API }

func (u upperCaseEcho) List(ctx context.Context, o cp.ListOptions) (cp.Page, error) {
	p, err := u.API.List(ctx, o)
	for i := range p.Instances {
		p.Instances[i].WorkspaceID = strings.ToUpper(p.Instances[i].WorkspaceID)
	}
	return p, err
}

// A stop with no recorded id lists the workspace's instances: whatever
// case the job's args or the CP's answer use, it must see (and stop) the
// instance that runs, or the row reads stopped while it runs on.
func TestTerminate_SeesInstancesWhateverTheCaseOfWorkspaceIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		argsID func(string) string
		wrapCP func(cp.API) cp.API
	}{
		{"upper-case job args", strings.ToUpper, func(a cp.API) cp.API { return a }},
		{"CP echoes upper-case ids", func(s string) string { return s }, func(a cp.API) cp.API { return upperCaseEcho{a} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true, CP: func(e *jobtest.Env) cp.API { return tc.wrapCP(e.API) }})
			id := uuid.NewString()
			inst := e.OldInstance(id) // launched, its answer lost: no id on the row
			e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped})
			_, err := e.Insert.Insert(context.Background(), jobs.TerminateArgs{WorkspaceID: tc.argsID(id)}, nil)
			require.NoError(t, err)

			e.Start()

			e.WaitStatus(id, store.StatusStopped)
			require.False(t, liveIDs(e)[inst], "the row stopped while its instance runs on")
		})
	}
}
