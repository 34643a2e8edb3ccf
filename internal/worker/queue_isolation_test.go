package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

const importSize = 5000

// seedImport writes n provisioning rows and their provision jobs in bulk:
// a large import the provision queue is busy with.
func seedImport(t *testing.T, e *jobtest.Env, n int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.Tx(func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			INSERT INTO workspaces (id, status, desired_state, generation, provision_nonce)
			SELECT gen_random_uuid(), 'provisioning', 'running', 1, 'import' FROM generate_series(1, $1)
			RETURNING id::text`, n)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		params := make([]river.InsertManyParams, 0, len(ids))
		for _, id := range ids {
			params = append(params, river.InsertManyParams{Args: jobs.ProvisionArgs{WorkspaceID: id, Generation: 1, Nonce: "import"}})
		}
		_, err = e.Insert.InsertManyTx(ctx, tx, params)
		return err
	}))
}

// Invariant "stops never wait" (docs/design.md): a stop never waits
// behind an import.
func TestTerminate_StartsWithinASecondBehind5000Provisions(t *testing.T) {
	e := jobtest.New(t, jobtest.Config{})
	gate := gateProvisions(t, e, 0) // every provision worker stays busy
	seedImport(t, e, importSize)
	gate.next(t) // the provision queue is working the import

	id := uuid.NewString()
	inst := e.CP.AddInstance(id, "running", time.Now())
	seedRow{id: id, status: store.StatusRunning, desired: store.DesiredRunning, instanceID: inst.InstanceID}.insert(t, e)
	stop := e.Terminate(id)

	var waited time.Duration
	e.WaitFor("the terminate to start", func() bool {
		err := e.Pool.QueryRow(context.Background(), `
			SELECT attempted_at - created_at FROM river_job WHERE id = $1 AND attempted_at IS NOT NULL`,
			stop.Job.ID).Scan(&waited)
		return err == nil
	})
	t.Logf("terminate started %s after insert, behind %d provisions", waited, importSize)
	require.Less(t, waited, time.Second)
	e.WaitStatus(id, store.StatusStopped)
	require.Empty(t, e.CP.Live(id))
}
