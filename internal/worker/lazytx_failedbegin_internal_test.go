package worker

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// A first batch whose prepare fails (nothing, not even BEGIN, ran) used to leave lazyTx
// "begun": a later statement ran in autocommit and beginFunc committed it,
// although a statement of the transaction failed. pgx.BeginFunc's real
// transaction is aborted by the failed Parse and commits nothing.
func TestBeginFunc_FailedFirstBatchThenExecCommitsNothing(t *testing.T) {
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE lazy_t (v int PRIMARY KEY)`)
	require.NoError(t, err)
	fn := func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO lazy_t VALUES ($1)`, 1)
		b.Queue(`INSERT INTO no_such_table VALUES ($1)`, 2)
		_ = tx.SendBatch(ctx, b).Close() // swallowed, as the pgx test case does
		_, _ = tx.Exec(ctx, `INSERT INTO lazy_t VALUES (3)`)
		return nil
	}
	for name, run := range map[string]func() error{
		"pgx":  func() error { return pgx.BeginFunc(ctx, pool, fn) },
		"lazy": func() error { return beginFunc(ctx, pool, fn) },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pool.Exec(ctx, `DELETE FROM lazy_t`)
			require.NoError(t, err)
			err = run()
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM lazy_t`).Scan(&n))
			t.Logf("%s: err=%v rows=%d", name, err, n)
			require.Zero(t, n, "a transaction with a failed statement committed a row")
		})
	}
}
