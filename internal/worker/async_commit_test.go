package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
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
// the same connection must stay synchronous). The error the job returns
// to River with the setting leaves a completed job as it is.
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
			// River's completer acts after the job returns; its events say it did.
			events, cancel := e.Worker.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
			t.Cleanup(cancel)
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

			for range 2 {
				select {
				case ev := <-events:
					require.Equal(t, river.EventKindJobCompleted, ev.Kind, "River reports the job completed")
				case <-time.After(30 * time.Second):
					t.Fatal("no completion event from River")
				}
			}
			// With the setting, each job returned errAsyncCompletion to River
			// (the retry that covers a lost commit); a commit that held
			// takes precedence: completed, no error stored, one attempt.
			var completed, clean int
			require.NoError(t, e.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'),
				count(*) FILTER (WHERE coalesce(array_length(errors, 1), 0) = 0 AND attempt = 1) FROM river_job`).Scan(&completed, &clean))
			require.Equal(t, 2, completed)
			require.Equal(t, 2, clean)

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
