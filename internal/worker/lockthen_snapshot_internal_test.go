package worker

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// The record's checks run after the row lock is granted, in the same
// pipelined batch as the lock and BEGIN (store.LockAndRecord through
// beginFunc), so they see what the lock's previous holder committed: here
// a stop event appended under the lock while the batch waited. One
// statement doing both would read with the snapshot it took before it
// waited, record the stopped instance, and leave the row running on it.
func TestLockAndRecord_SeesWhatTheLockHolderCommitted(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	st := store.MustFor("")
	id := uuid.NewString()
	_, err := pool.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, provision_nonce) VALUES ($1, 'provisioning', 'running', 'n1')`, id)
	require.NoError(t, err)
	inst := "i-0fedcba987654321"
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = st.Lock(ctx, holder, id)
	require.NoError(t, err)
	type res struct {
		rec store.Recording
		err error
	}
	done := make(chan res, 1)
	go func() {
		var r res
		r.err = beginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			r.rec, err = st.LockAndRecord(ctx, tx, id, 1, "n1", inst, obs.StopEvents,
				store.Event{WorkspaceID: id, Event: obs.EvProvisionStarted, Actor: "test"})
			return err
		})
		done <- r
	}()
	// No signal exists for "blocked on a lock": poll pg_stat_activity.
	for {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n))
		if n > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, st.AppendEvent(ctx, holder, store.Event{WorkspaceID: id, Event: obs.EvProvisionStopped, Actor: "test",
		Fields: map[string]any{"instance_id": inst}}))
	require.NoError(t, holder.Commit(ctx))
	r := <-done
	require.NoError(t, r.err)
	require.True(t, r.rec.Stopped, "the record missed a stop committed under the lock")
	require.False(t, r.rec.Recorded)
}
