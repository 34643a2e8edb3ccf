package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// beginFunc keeps pgx.BeginFunc's promises although its BEGIN rides with
// the first batch: a change is committed only when fn returns nil and
// every statement succeeded, and the connection goes back to the pool
// outside any transaction.
func TestBeginFunc_CommitsOnlyWhatSucceeded(t *testing.T) {
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE lazy_t (v int PRIMARY KEY)`)
	require.NoError(t, err)
	insert := func(tx pgx.Tx, vs ...int) error {
		b := &pgx.Batch{}
		for _, v := range vs {
			b.Queue(`INSERT INTO lazy_t VALUES ($1)`, v)
		}
		return tx.SendBatch(ctx, b).Close()
	}
	errFn := errors.New("fn failed")
	for _, tc := range []struct {
		name    string
		fn      func(pgx.Tx) error
		wantErr error
		want    []int
	}{
		{"batch first, committed", func(tx pgx.Tx) error { return insert(tx, 1, 2) }, nil, []int{1, 2}},
		{"exec first, then a batch", func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO lazy_t VALUES (3)`); err != nil {
				return err
			}
			return insert(tx, 4)
		}, nil, []int{3, 4}},
		{"fn's error rolls the batch back", func(tx pgx.Tx) error {
			require.NoError(t, insert(tx, 5))
			return errFn
		}, errFn, nil},
		{"a failed statement whose error fn swallowed is not committed", func(tx pgx.Tx) error {
			_ = insert(tx, 6, 1) // 1 exists: the batch fails, the transaction is aborted
			return nil
		}, pgx.ErrTxCommitRollback, nil},
		{"nothing sent, nothing to commit", func(pgx.Tx) error { return nil }, nil, nil},
		{"no savepoints", func(tx pgx.Tx) error {
			_, err := tx.Begin(ctx)
			return err
		}, errNestedTx, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, `DELETE FROM lazy_t WHERE v > 2`)
			require.NoError(t, err)
			err = beginFunc(ctx, pool, tc.fn)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			rows, err := pool.Query(ctx, `SELECT v FROM lazy_t WHERE v > 2 OR $1 ORDER BY v`, tc.name == "batch first, committed")
			require.NoError(t, err)
			got, err := pgx.CollectRows(rows, pgx.RowTo[int])
			require.NoError(t, err)
			if len(tc.want) == 0 {
				require.Empty(t, got)
			} else {
				require.Equal(t, tc.want, got)
			}
			// Every connection is back outside a transaction.
			for _, c := range pool.AcquireAllIdle(ctx) {
				require.Equal(t, byte('I'), c.Conn().PgConn().TxStatus())
				c.Release()
			}
		})
	}
}

// A completing transaction's prelude runs right after BEGIN whichever way
// BEGIN goes out (with a first batch, on its own before a plain
// statement, with the completion and COMMIT when fn sent nothing), and
// ends with the transaction (SET LOCAL).
func TestCompleteFunc_PreludeRunsInEveryBeginPath(t *testing.T) {
	pool, _ := testdb.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE seen_commit (path text, setting text)`)
	require.NoError(t, err)
	const record = `INSERT INTO seen_commit SELECT $1, current_setting('synchronous_commit')`
	prelude := []string{"set local synchronous_commit = off"}
	for _, tc := range []struct {
		name   string
		fn     func(tx pgx.Tx, path string) error
		inLast bool
	}{
		{"batch first", func(tx pgx.Tx, path string) error {
			b := &pgx.Batch{}
			b.Queue(record, path)
			return tx.SendBatch(ctx, b).Close()
		}, false},
		{"plain statement first", func(tx pgx.Tx, path string) error {
			_, err := tx.Exec(ctx, record, path)
			return err
		}, false},
		{"nothing before the commit", func(pgx.Tx, string) error { return nil }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := completeFunc(ctx, pool, prelude, func(tx pgx.Tx) error { return tc.fn(tx, tc.name) }, func(b *pgx.Batch) {
				if tc.inLast {
					b.Queue(record, tc.name)
				}
			})
			require.NoError(t, err)
			var got string
			require.NoError(t, pool.QueryRow(ctx, `SELECT setting FROM seen_commit WHERE path = $1`, tc.name).Scan(&got))
			require.Equal(t, "off", got)
			for _, c := range pool.AcquireAllIdle(ctx) {
				var after string
				require.NoError(t, c.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&after))
				c.Release()
				require.Equal(t, "on", after, "SET LOCAL ends with the transaction")
			}
		})
	}
}
