package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

var errHandler = errors.New("handler failed after enqueueing")

func TestRequestProvision_RollbackLeavesNeitherRowNorJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id := uuid.NewString()

	err := e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestProvision(ctx, tx, e.Insert, jobs.ProvisionRequest{WorkspaceID: id})
		require.NoError(t, err)
		rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, tx, &jobs.ProvisionArgs{}, nil)
		return errHandler
	})
	require.ErrorIs(t, err, errHandler)

	_, err = store.MustFor("").Get(ctx, e.Pool, id)
	require.ErrorIs(t, err, store.ErrNotFound)
	rivertest.RequireNotInserted(ctx, t, riverpgxv5.New(e.Pool), &jobs.ProvisionArgs{}, nil)
}

func TestRequestProvision_CommitLeavesRowAndJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	id := uuid.NewString()

	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Tier: 2,
		Env: map[string]string{"API_KEY": "env-SECRET-value"}})
	require.Equal(t, jobs.ActionCreated, res.Action)

	ws := e.Workspace(id)
	require.Equal(t, store.StatusProvisioning, ws.Status)
	require.EqualValues(t, 1, ws.Generation)
	job := rivertest.RequireInserted(ctx, t, riverpgxv5.New(e.Pool), &jobs.ProvisionArgs{},
		&rivertest.RequireInsertedOpts{Queue: jobs.QueueProvision})
	require.Equal(t, jobs.ProvisionArgs{WorkspaceID: id, Generation: 1, Nonce: ws.Nonce}, *job.Args)
	require.Equal(t, res.Job.ID, job.ID)

	// Invariant "ids-only args" (docs/design.md): the env stays beside the row.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(res.Job.EncodedArgs, &raw))
	require.ElementsMatch(t, []string{"workspace_id", "generation", "nonce"}, keys(raw))
	require.NotContains(t, string(res.Job.EncodedArgs), "env-SECRET-value")
}

func TestRequestTerminate_RollbackLeavesRowRunningAndNoJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	ctx := context.Background()
	id := uuid.NewString()
	e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})

	err := e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminate(ctx, tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id})
		require.NoError(t, err)
		return errHandler
	})
	require.ErrorIs(t, err, errHandler)
	require.Equal(t, store.StatusRunning, e.Workspace(id).Status)
	rivertest.RequireNotInserted(ctx, t, riverpgxv5.New(e.Pool), &jobs.TerminateArgs{}, nil)
}

func TestRequestTerminate_UnknownWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	err := e.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminate(context.Background(), tx, e.Insert, jobs.TerminateRequest{WorkspaceID: uuid.NewString()})
		return err
	})
	require.ErrorIs(t, err, jobs.ErrUnknownWorkspace)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
