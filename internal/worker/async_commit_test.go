package worker_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// COMPLETION_SYNCHRONOUS_COMMIT reaches the transactions that complete a
// job, from their start: the host's outcome hook, which runs inside them,
// records the synchronous_commit it wrote under ('off' with the setting,
// the server's 'on' without), and no pooled connection keeps it after
// (SET LOCAL, not SET: the provision.start note a later job writes on
// the same connection must stay synchronous).
func TestAsyncCompletionCommit_ReachesTheCompletingTransaction(t *testing.T) {
	for _, c := range []struct{ setting, want string }{
		{"", "on"},
		{jobs.SynchronousCommitOn, "on"},
		{jobs.SynchronousCommitOff, "off"},
	} {
		t.Run("setting="+c.setting, func(t *testing.T) {
			ctx := context.Background()
			hook := func(ctx context.Context, tx jobs.Execer, o jobs.Outcome) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO public.seen_commit (status, setting)
					SELECT $1, current_setting('synchronous_commit')`, string(o.Status))
				return err
			}
			e := jobtest.New(t, jobtest.Config{NoStart: true, OnOutcome: hook,
				Settings: jobs.Settings{CompletionSynchronousCommit: c.setting}})
			_, err := e.Pool.Exec(ctx, `CREATE TABLE public.seen_commit (status text NOT NULL, setting text NOT NULL)`)
			require.NoError(t, err)
			e.Start()
			id := uuid.NewString()
			e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
			e.WaitStatus(id, store.StatusRunning)
			e.Terminate(id)
			e.WaitStatus(id, store.StatusStopped)

			rows, err := e.Pool.Query(ctx, `SELECT status || '=' || setting FROM public.seen_commit ORDER BY status`)
			require.NoError(t, err)
			var seen []string
			for rows.Next() {
				var s string
				require.NoError(t, rows.Scan(&s))
				seen = append(seen, s)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []string{"running=" + c.want, "stopped=" + c.want}, seen)

			for _, conn := range e.Pool.AcquireAllIdle(ctx) {
				var s string
				err := conn.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&s)
				conn.Release()
				require.NoError(t, err)
				require.Equal(t, "on", s, "a pooled connection outside any transaction")
			}
		})
	}
}
