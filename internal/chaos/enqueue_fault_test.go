package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// An enqueue whose transaction breaks after its row change was written
// (its backend is killed while the job insert waits on a lock) reports the
// error, exits 1, and leaves neither the row change nor a job nor a
// timeline line. Pins invariant "one-transaction outbox"
// (docs/design.md): withTx runs the row change and the
// job insert in one transaction (commit them separately and the row is
// left stopping, or created, with no job to carry it out).
func TestEnqueue_BrokenTransactionLeavesNothingHalfWritten(t *testing.T) {
	cases := []struct {
		name    string
		verb    string
		seedRow bool // a running workspace exists (terminate), or none (provision creates it)
	}{
		{name: "terminate of a running workspace", verb: "terminate", seedRow: true},
		{name: "provision of a new workspace", verb: "provision"},
	}
	w := newWorld(t, cpfake.Options{}, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			id := uuid.NewString()
			if tc.seedRow {
				_, err := w.pool.Exec(ctx, `INSERT INTO workspaces (id, status, desired_state, instance_id, provision_nonce)
					VALUES ($1, 'running', 'running', 'i-0123456789abcdef0', 'n')`, id)
				require.NoError(t, err)
			}
			before := w.snapshot(t, id)

			// Hold inserts into river_job: the enqueue writes its row change,
			// then blocks on the job insert, inside its transaction.
			lock, err := w.pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = lock.Rollback(ctx) }()
			_, err = lock.Exec(ctx, `LOCK TABLE river_job IN SHARE MODE`)
			require.NoError(t, err)

			type outcome struct {
				code   int
				stderr string
			}
			done := make(chan outcome, 1)
			go func() {
				_, code, stderr := w.runEnqueue(ctx, w.dbURL, tc.verb, "--workspace-id", id)
				done <- outcome{code, stderr}
			}()
			pid := waitBlockedInsert(t, w.pool, done)
			_, err = w.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
			require.NoError(t, err)
			out := <-done
			require.NoError(t, lock.Rollback(ctx))

			require.Equal(t, 1, out.code, "stderr: %s", out.stderr)
			require.True(t, strings.HasPrefix(out.stderr, "enqueue: "), "the error is reported: %q", out.stderr)
			require.Equal(t, before, w.snapshot(t, id), "the broken transaction left part of its change")
		})
	}
}

// waitBlockedInsert finds the backend whose job insert waits on the lock.
// It reads pg_stat_activity from the pool, outside the lock's
// transaction: inside one, Postgres serves a snapshot of the view.
func waitBlockedInsert[T any](t *testing.T, pool *pgxpool.Pool, exited <-chan T) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case out := <-exited:
			t.Fatalf("the enqueue exited before it blocked: %+v", out)
		default:
		}
		var pid int
		err := pool.QueryRow(context.Background(), `
			SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%insert%'
			LIMIT 1`).Scan(&pid)
		if err == nil {
			return pid
		}
		require.ErrorIs(t, err, pgx.ErrNoRows)
		time.Sleep(20 * time.Millisecond) // waiting on another process to block: no signal
	}
	t.Fatal("the enqueue never blocked on its job insert")
	return 0
}

// snapshot is what a request may change for a workspace: its row, its env,
// its jobs and its timeline.
func (w *world) snapshot(t *testing.T, id string) string {
	t.Helper()
	var s string
	require.NoError(t, w.pool.QueryRow(context.Background(), `
		SELECT coalesce((SELECT row_to_json(x)::text FROM (SELECT status, desired_state, instance_id, generation
				FROM workspaces WHERE id = $1) x), 'no row')
			|| ' env=' || (SELECT count(*) FROM workspace_env WHERE workspace_id = $1)
			|| ' jobs=' || (SELECT count(*) FROM river_job WHERE args @> jsonb_build_object('workspace_id', $1::text))
			|| ' events=' || (SELECT count(*) FROM workspace_events WHERE workspace_id = $1)`, id).Scan(&s))
	return s
}
