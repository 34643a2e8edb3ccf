// Package handler is how a host on database/sql and lib/pq adopts the
// worker: each request runs in the handler's own *sql.Tx, right before
// its Commit. It is its own module, so it can only use what the worker
// exports (a type from an internal package would not compile here).
package handler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "github.com/lib/pq" // the host's driver

	"github.com/molecule-ai/provision-worker/jobs"
)

// Open connects as the host does and builds the insert-only River client
// its handlers enqueue through, in the worker's schema (DATABASE_SCHEMA).
func Open(dbURL, schema string) (*sql.DB, *jobs.SQLClient, error) {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return nil, nil, fmt.Errorf("open: %w", err)
	}
	client, err := jobs.NewInsertClientSQL(db, jobs.Settings{Schema: schema})
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return db, client, nil
}

// Create inserts the host's row and asks for its provision: both commit
// together, or neither exists.
func Create(ctx context.Context, db *sql.DB, client *jobs.SQLClient, id, name string) (jobs.Workspace, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return jobs.Workspace{}, err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO workspaces (id, name, status) VALUES ($1, $2, 'provisioning')`, id, name); err != nil {
		return jobs.Workspace{}, fmt.Errorf("insert workspace: %w", err)
	}
	res, err := jobs.RequestProvision(ctx, tx, client, jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
	if err != nil {
		return jobs.Workspace{}, err // the transaction is broken: roll it back
	}
	return res.Workspace, tx.Commit()
}

// DeleteSubtree asks for every workspace of a subtree to be removed, in
// one transaction and a handful of statements however many there are: a
// failure asks for none of them. Ids the worker never saw refuse the
// batch, naming them (errors.Is jobs.ErrUnknownWorkspace).
func DeleteSubtree(ctx context.Context, db *sql.DB, client *jobs.SQLClient, ids []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	opts := jobs.TerminateOptions{Delete: true, Actor: "delete-handler"}
	if _, err := jobs.RequestTerminateMany(ctx, tx, client, ids, opts); err != nil {
		if errors.Is(err, jobs.ErrUnknownWorkspace) {
			return fmt.Errorf("subtree delete: %w", err)
		}
		return err
	}
	return tx.Commit()
}

// Import asks for many workspaces at once (an org import): new ids are
// written set-based, one statement per table and one River InsertManyTx.
func Import(ctx context.Context, db *sql.DB, client *jobs.SQLClient, ids []string) ([]jobs.Result, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	reqs := make([]jobs.ProvisionRequest, len(ids))
	for i, id := range ids {
		reqs[i] = jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Actor: "import"}
	}
	results, err := jobs.RequestProvisionMany(ctx, tx, client, reqs) // results[i] answers ids[i]
	if err != nil {
		return nil, err
	}
	return results, tx.Commit()
}

// Restart asks for a stop and a fresh generation.
func Restart(ctx context.Context, db *sql.DB, client *jobs.SQLClient, id string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := jobs.RequestRestart(ctx, tx, client, id, "restart-handler"); err != nil {
		return err
	}
	return tx.Commit()
}

// Describe reads the worker's view of a workspace for the host's API.
func Describe(ctx context.Context, db *sql.DB, schema, id string) (string, error) {
	ws, err := jobs.GetWorkspace(ctx, jobs.SQLDB(db), schema, id)
	if err != nil {
		return "", err
	}
	switch ws.Status {
	case jobs.StatusRunning:
		return "online on " + ws.InstanceID, nil
	case jobs.StatusFailed:
		return "failed", nil // ws.LastError stays in the worker's logs
	default:
		return string(ws.Status), nil
	}
}
