package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lazyTx is a pgx.Tx whose BEGIN is sent with its first statement: in the
// same pipeline when that statement is a batch (the completing
// transactions start with one: store.LockAndRecord, LockAndFinishStop),
// else on its own just before it. pgx sends BEGIN as a round trip of its
// own, and each job's completing transaction is a slice of the worker's
// throughput against bare River (issue 15). It is one real transaction:
// no savepoints (Begin refuses), and Commit and Rollback behave as pgx's.
type lazyTx struct {
	conn *pgx.Conn
	// prelude is sent right after BEGIN, in its round trip: the SET LOCAL
	// of an opt-in asynchronous completion commit (Deps.completionPrelude).
	prelude []string
	begun   bool
	closed  bool
	// failed is why BEGIN did not run: a first batch that failed before
	// any of it executed (pgx prepares every statement of a batch first,
	// so a parse error fails the whole batch, BEGIN included), or a
	// refused BEGIN. Every later statement fails with it and Commit
	// reports a rollback, as they would after a failed statement in a
	// pgx transaction. Without it they would run in autocommit, one by
	// one, and Commit would "succeed" outside any transaction: the row
	// change and the job's completion would no longer commit together.
	failed error
}

var errNestedTx = errors.New("worker: nested transactions are not used in a completing transaction")

// beginFunc runs fn in a lazyTx on a connection of pool, commits when fn
// returns nil and rolls back otherwise (or on a panic), as pgx.BeginFunc.
func beginFunc(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return inLazyTx(ctx, pool, nil, fn, func(tx *lazyTx) error { return tx.Commit(ctx) })
}

// completeFunc runs fn in a lazyTx on a connection of pool and, when fn
// returns nil, sends the statements last queues and COMMIT in one
// pipeline (commitWith); it rolls back otherwise (or on a panic).
// prelude runs right after BEGIN, in the same round trip.
func completeFunc(ctx context.Context, pool *pgxpool.Pool, prelude []string, fn func(pgx.Tx) error, last func(*pgx.Batch)) error {
	return inLazyTx(ctx, pool, prelude, fn, func(tx *lazyTx) error { return tx.commitWith(ctx, last) })
}

// inLazyTx runs fn in a lazyTx on a connection of pool, then commit when
// fn returned nil; it rolls back otherwise (or on a panic).
func inLazyTx(ctx context.Context, pool *pgxpool.Pool, prelude []string, fn func(pgx.Tx) error, commit func(*lazyTx) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	// A connection left inside a transaction (a failed rollback) is
	// destroyed by the pool on release, never reused.
	defer c.Release()
	tx := &lazyTx{conn: c.Conn(), prelude: prelude}
	defer func() {
		if !tx.closed {
			_ = tx.Rollback(ctx)
		}
	}()
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx) // as pgx.BeginFunc: fn's error is the one to return
		return err
	}
	return commit(tx)
}

// commitError is an error of commitWith's pipeline, as against one of fn:
// a refusal by last's statements is told apart from the same SQLSTATE
// raised by fn's (say, a host's outcome hook). inLast says the error is
// one of last's statements, not BEGIN's or COMMIT's: a host's deferred
// trigger fails COMMIT with any SQLSTATE it likes, the refusal's
// included, while the job still runs under this attempt.
type commitError struct {
	err    error
	inLast bool
}

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// commitWith sends the statements last queues, then COMMIT, in one
// pipeline (BEGIN in front when nothing went out yet), and closes the
// transaction. A statement of last must fail whenever the transaction
// must not commit: its error makes the server skip the rest, COMMIT
// included, and the transaction is rolled back. That error is returned,
// as a *commitError that says whether it was one of last's.
func (tx *lazyTx) commitWith(ctx context.Context, last func(*pgx.Batch)) error {
	if tx.closed {
		return &commitError{err: pgx.ErrTxClosed}
	}
	if tx.failed != nil {
		tx.closed = true
		return &commitError{err: pgx.ErrTxCommitRollback}
	}
	b := &pgx.Batch{}
	first := 0 // last's first statement
	if !tx.begun {
		b.QueuedQueries = tx.beginQueries()
		first = len(b.QueuedQueries)
	}
	last(b)
	b.Queue("commit")
	res := tx.conn.SendBatch(ctx, b)
	tx.closed = true
	var tag pgconn.CommandTag
	var err error
	failed := -1
	for i := range b.Len() {
		if tag, err = res.Exec(); err != nil {
			failed = i
			break
		}
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Not idle: the server's transaction is open or aborted (the
		// pipeline stopped before COMMIT); end it, or drop the connection.
		if tx.conn.PgConn().TxStatus() != 'I' {
			if _, rerr := tx.conn.Exec(ctx, "rollback"); rerr != nil {
				_ = tx.conn.Close(ctx)
			}
		}
		return &commitError{err: err, inLast: failed >= first && failed < b.Len()-1}
	}
	if tag.String() == "ROLLBACK" {
		return &commitError{err: pgx.ErrTxCommitRollback}
	}
	return nil
}

// begin sends BEGIN on its own unless it went out already.
func (tx *lazyTx) begin(ctx context.Context) error {
	if tx.closed {
		return pgx.ErrTxClosed
	}
	if tx.failed != nil {
		return tx.failed
	}
	if tx.begun {
		return nil
	}
	if len(tx.prelude) == 0 {
		if _, err := tx.conn.Exec(ctx, "begin"); err != nil {
			return tx.beginFailed(err)
		}
	} else if err := tx.conn.SendBatch(ctx, &pgx.Batch{QueuedQueries: tx.beginQueries()}).Close(); err != nil {
		return tx.beginFailed(err)
	}
	tx.begun = true
	return nil
}

// beginQueries are BEGIN and the prelude, to go out in front of the
// transaction's first statements.
func (tx *lazyTx) beginQueries() []*pgx.QueuedQuery {
	q := []*pgx.QueuedQuery{{SQL: "begin"}}
	for _, sql := range tx.prelude {
		q = append(q, &pgx.QueuedQuery{SQL: sql})
	}
	return q
}

// beginFailed records err as why the transaction did not begin, unless
// the server says one is open (BEGIN ran and a later statement failed:
// the server's aborted transaction then refuses the rest itself, and
// Commit reads its ROLLBACK). It returns the error to hand back.
func (tx *lazyTx) beginFailed(err error) error {
	if s := tx.conn.PgConn().TxStatus(); s == 'T' || s == 'E' {
		tx.begun = true
		return err
	}
	tx.failed = fmt.Errorf("worker: transaction did not begin: %w", err)
	return tx.failed
}

func (tx *lazyTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNestedTx }

func (tx *lazyTx) Commit(ctx context.Context) error {
	if tx.closed {
		return pgx.ErrTxClosed
	}
	if tx.failed != nil {
		tx.closed = true
		return pgx.ErrTxCommitRollback
	}
	if !tx.begun {
		tx.closed = true
		return nil // nothing was sent
	}
	tag, err := tx.conn.Exec(ctx, "commit")
	tx.closed = true
	if err != nil {
		if tx.conn.PgConn().TxStatus() != 'I' {
			_ = tx.conn.Close(ctx)
		}
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

func (tx *lazyTx) Rollback(ctx context.Context) error {
	if tx.closed {
		return pgx.ErrTxClosed
	}
	tx.closed = true
	if !tx.begun {
		return nil
	}
	if _, err := tx.conn.Exec(ctx, "rollback"); err != nil {
		_ = tx.conn.Close(ctx)
		return err
	}
	return nil
}

func (tx *lazyTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := tx.begin(ctx); err != nil {
		return 0, err
	}
	return tx.conn.CopyFrom(ctx, table, cols, src)
}

// SendBatch sends BEGIN in front of b when the transaction has not begun,
// and hands back b's results only.
func (tx *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if tx.closed {
		return failedBatch{pgx.ErrTxClosed}
	}
	if tx.failed != nil {
		return failedBatch{tx.failed}
	}
	if tx.begun {
		return tx.conn.SendBatch(ctx, b)
	}
	withBegin := &pgx.Batch{QueuedQueries: append(tx.beginQueries(), b.QueuedQueries...)}
	res := tx.conn.SendBatch(ctx, withBegin)
	for range 1 + len(tx.prelude) {
		if _, err := res.Exec(); err != nil {
			// Closed first, so the server's transaction status is final.
			return failedBatch{tx.beginFailed(errors.Join(err, res.Close()))}
		}
	}
	tx.begun = true
	return res
}

// LargeObjects is part of pgx.Tx, and nothing in a completing transaction
// (the store, the job's completion, River's InsertTx, the outcome hook, which
// sees only ExecContext) calls it. pgx.LargeObjects cannot be built
// outside pgx, and its zero value would fail later and less clearly, so
// a call is a programming error reported at once.
func (tx *lazyTx) LargeObjects() pgx.LargeObjects {
	panic("worker: large objects are not used in a completing transaction")
}

func (tx *lazyTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := tx.begin(ctx); err != nil {
		return nil, err
	}
	return tx.conn.Prepare(ctx, name, sql)
}

func (tx *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := tx.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.conn.Exec(ctx, sql, args...)
}

func (tx *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := tx.begin(ctx); err != nil {
		return nil, err
	}
	return tx.conn.Query(ctx, sql, args...)
}

func (tx *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := tx.begin(ctx); err != nil {
		return errRow{err}
	}
	return tx.conn.QueryRow(ctx, sql, args...)
}

func (tx *lazyTx) Conn() *pgx.Conn { return tx.conn }

// errRow is a Row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// failedBatch is BatchResults that fail with err.
type failedBatch struct{ err error }

func (b failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b failedBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b failedBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b failedBatch) Close() error                     { return b.err }
func (b failedBatch) Tx() pgx.Tx                       { return nil }
