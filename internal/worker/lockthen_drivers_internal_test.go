package worker

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// The pipelined path the worker runs (beginFunc's lazyTx, pgx batches) and
// the one statement after another path (lib/pq, the host's driver) decide
// alike: a nonce mismatch records nothing, a missing row is ErrNotFound,
// and a restart's finished stop appends its event but leaves the row
// stopping for the caller to start the next generation.
func TestLockStatements_PipelinedAndLibPQAgree(t *testing.T) {
	t.Parallel()
	pool, url := testdb.NewPool(t)
	ctx := context.Background()
	db, err := sql.Open("postgres", url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	st := store.MustFor("")
	type out struct {
		rec              store.Recording
		recErr           error
		marked           bool
		nEvents          int
		status, instance string
	}
	run := func(sfx string, inTx func(func(store.DB) error) error) out {
		var o out
		id := uuid.NewString()
		_, err := pool.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, provision_nonce) VALUES ($1, 'provisioning', 'running', 'n1')`, id)
		require.NoError(t, err)
		// nonce mismatch: not recorded
		require.NoError(t, inTx(func(tx store.DB) (err error) {
			o.rec, err = st.LockAndRecord(ctx, tx, id, 1, "other", "i-0aaaaaaaaaaaaaaa1", obs.StopEvents, store.Event{WorkspaceID: id, Event: "x", Actor: "t"})
			return err
		}))
		// missing row
		_ = inTx(func(tx store.DB) error {
			_, o.recErr = st.LockAndRecord(ctx, tx, uuid.NewString(), 1, "n1", "i-0aaaaaaaaaaaaaaa2", obs.StopEvents, store.Event{Event: "x", Actor: "t"})
			return nil
		})
		// restart path: stopping, desired running
		_, err = pool.Exec(ctx, `UPDATE workspaces SET status='stopping', instance_id=$2 WHERE id=$1`, id, "i-0aaaaaaaaaaaaaa3"+sfx)
		require.NoError(t, err)
		require.NoError(t, inTx(func(tx store.DB) (err error) {
			_, o.marked, err = st.LockAndFinishStop(ctx, tx, id, "i-0aaaaaaaaaaaaaa3"+sfx, store.Event{WorkspaceID: id, Event: obs.EvProvisionStopped, Actor: "t", Fields: map[string]any{"instance_id": "i-0aaaaaaaaaaaaaa3" + sfx}})
			return err
		}))
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workspace_events WHERE workspace_id=$1`, id).Scan(&o.nEvents))
		require.NoError(t, pool.QueryRow(ctx, `SELECT status, coalesce(instance_id,'') FROM workspaces WHERE id=$1`, id).Scan(&o.status, &o.instance))
		o.instance = strings.TrimSuffix(o.instance, sfx) // each run's own instance
		o.rec.Workspace = store.Workspace{}
		return o
	}
	lazy := run("a", func(fn func(store.DB) error) error {
		return beginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(tx) })
	})
	pq := run("b", func(fn func(store.DB) error) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(store.SQL(tx)); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
	require.ErrorIs(t, lazy.recErr, store.ErrNotFound)
	require.ErrorIs(t, pq.recErr, store.ErrNotFound)
	lazy.recErr, pq.recErr = nil, nil
	require.Equal(t, lazy, pq)
	require.False(t, lazy.marked)
	require.Equal(t, 1, lazy.nEvents)
	require.Equal(t, "stopping", lazy.status)
}
