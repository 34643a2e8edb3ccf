package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// SQLQuerier is what a *sql.Tx, *sql.DB and *sql.Conn offer, on any
// driver (lib/pq, pgx's stdlib).
type SQLQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQL adapts a database/sql handle to DB, so the one copy of each
// statement in this package runs in a host's *sql.Tx as it does in a
// pgx.Tx. The statements keep to what every driver encodes the same way:
// text, integers, booleans, nullable pointers, and JSON passed as text.
func SQL(q SQLQuerier) DB { return sqlDB{q: q} }

type sqlDB struct{ q SQLQuerier }

func (d sqlDB) Exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	res, err := d.q.ExecContext(ctx, query, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return pgconn.CommandTag{}, fmt.Errorf("store: rows affected: %w", err)
	}
	// The store reads only RowsAffected, which pgconn parses from the tag.
	return pgconn.NewCommandTag(fmt.Sprintf("UPDATE %d", n)), nil
}

func (d sqlDB) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	rows, err := d.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return &sqlRows{rows: rows}, nil
}

func (d sqlDB) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	return sqlRow{row: d.q.QueryRowContext(ctx, query, args...)}
}

// sqlRow maps database/sql's no-rows error to pgx's, the one the store
// checks for.
type sqlRow struct{ row *sql.Row }

func (r sqlRow) Scan(dest ...any) error { return noRows(r.row.Scan(dest...)) }

func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return pgx.ErrNoRows
	}
	return err
}

// sqlRows is *sql.Rows as pgx.Rows: the store uses Next, Scan, Err and
// Close; the rest answer empty.
type sqlRows struct {
	rows *sql.Rows
	err  error
}

func (r *sqlRows) Close() {
	if err := r.rows.Close(); err != nil && r.err == nil {
		r.err = err
	}
}

func (r *sqlRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

func (r *sqlRows) Next() bool                                   { return r.rows.Next() }
func (r *sqlRows) Scan(dest ...any) error                       { return r.rows.Scan(dest...) }
func (r *sqlRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r *sqlRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r *sqlRows) Values() ([]any, error) {
	return nil, errors.New("store: Values is not supported on database/sql")
}
func (r *sqlRows) RawValues() [][]byte { return nil }
func (r *sqlRows) Conn() *pgx.Conn     { return nil }

// TypeMap is unused by the store; pgx.Rows requires it.
func (r *sqlRows) TypeMap() *pgtype.Map { return nil }
