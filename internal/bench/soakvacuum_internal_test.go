package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// vacuumDue vacuums a table whose dead tuples pass autovacuum's default
// threshold, and only then: the soak's stand-in for autovacuum on a
// server without it.
func TestVacuumDue_VacuumsAChurnedTable(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	_, err := pool.Exec(ctx, `
		INSERT INTO provisioner.workspaces (id, status, desired_state, provision_nonce)
		SELECT gen_random_uuid(), 'running', 'running', md5(g::text) FROM generate_series(1, 1000) g`)
	require.NoError(t, err)
	vacuums := func() int64 {
		var n int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT vacuum_count FROM pg_stat_user_tables
			WHERE schemaname = 'provisioner' AND relname = 'workspaces'`).Scan(&n))
		return n
	}
	// The statistics collector reports a transaction's counts within a
	// second or so of its end, with no signal to wait on: poll.
	waitDead := func(atLeast int64) {
		require.Eventually(t, func() bool {
			var dead int64
			require.NoError(t, pool.QueryRow(ctx, `SELECT n_dead_tup FROM pg_stat_user_tables
				WHERE schemaname = 'provisioner' AND relname = 'workspaces'`).Scan(&dead))
			return dead >= atLeast
		}, 10*time.Second, 50*time.Millisecond)
	}
	_, err = pool.Exec(ctx, `UPDATE provisioner.workspaces SET desired_state = 'stopped' WHERE ctid IN
		(SELECT ctid FROM provisioner.workspaces LIMIT 100)`)
	require.NoError(t, err)
	waitDead(100)
	_, err = vacuumDue(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, vacuums(), "100 dead of 1,000 is under the threshold (250)")

	_, err = pool.Exec(ctx, `UPDATE provisioner.workspaces SET desired_state = 'running'`)
	require.NoError(t, err)
	waitDead(1000)
	ran, err := vacuumDue(ctx, pool)
	require.NoError(t, err)
	require.GreaterOrEqual(t, ran, 1)
	require.Equal(t, int64(1), vacuums())
}
