package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// Status is a workspace row's status (docs/design.md#statuses). A
// handler outside this module compares against these; the row's own type
// lives in an internal package it cannot name.
type Status string

// The statuses a workspace row moves through.
const (
	StatusProvisioning Status = store.StatusProvisioning
	StatusRunning      Status = store.StatusRunning
	StatusStopping     Status = store.StatusStopping
	StatusStopped      Status = store.StatusStopped
	StatusRemoved      Status = store.StatusRemoved
	StatusFailed       Status = store.StatusFailed
)

// Desired is what the latest request asked for.
type Desired string

// The desired states a request records.
const (
	DesiredRunning Desired = store.DesiredRunning
	DesiredStopped Desired = store.DesiredStopped
	DesiredDeleted Desired = store.DesiredDeleted
)

// Workspace is a read-only view of a workspace row: a copy, so changing it
// changes nothing.
type Workspace struct {
	ID              string
	Status          Status
	Desired         Desired
	InstanceID      string // "" until the CP answered, and again once stopped
	Generation      int64
	LastError       string // generic for a host to show; "" when none
	CreatedAt       time.Time
	UpdatedAt       time.Time
	StatusChangedAt time.Time
}

func viewOf(w store.Workspace) Workspace {
	return Workspace{ID: w.ID, Status: Status(w.Status), Desired: Desired(w.Desired), InstanceID: w.InstanceID,
		Generation: w.Generation, LastError: w.LastError, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
		StatusChangedAt: w.StatusChangedAt}
}

// PgxQuerier is what a pgxpool.Pool, pgx.Conn and pgx.Tx offer.
type PgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SQLQuerier is what a *sql.DB, *sql.Conn and *sql.Tx offer, on any
// driver (lib/pq, pgx's stdlib). Declared here, not aliased, so a host
// can name it; the store reads through the same method set.
type SQLQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DB is a database handle the read API accepts, on either driver family.
type DB struct{ db store.DB }

// PgxDB reads through a pgx pool, connection or transaction.
func PgxDB(q PgxQuerier) DB { return DB{db: q} }

// SQLDB reads through a database/sql handle: a *sql.DB, or the handler's
// own *sql.Tx.
func SQLDB(q SQLQuerier) DB { return DB{db: store.SQL(q)} }

// GetWorkspace reads a workspace by id from schema ("" is the default,
// "provisioner"). It returns ErrUnknownWorkspace when there is no row.
func GetWorkspace(ctx context.Context, db DB, schema, id string) (Workspace, error) {
	if err := validateWorkspaceID(id); err != nil {
		return Workspace{}, err
	}
	st, err := store.For(schema)
	if err != nil {
		return Workspace{}, err
	}
	if db.db == nil {
		return Workspace{}, errors.New("jobs: GetWorkspace needs a DB from PgxDB or SQLDB")
	}
	ws, err := st.Get(ctx, db.db, id)
	if errors.Is(err, store.ErrNotFound) {
		return Workspace{}, fmt.Errorf("%w %s", ErrUnknownWorkspace, id)
	}
	if err != nil {
		return Workspace{}, err
	}
	return viewOf(ws), nil
}
