package hostdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/molecule-ai/provision-worker/jobs"
)

// Every statement names public explicitly: the worker keeps a table of
// the same name (workspaces) in its own schema, and a search_path that
// put that schema first would otherwise send the host's writes there.

// The host's statuses (its workspace_status enum).
const (
	StatusProvisioning = "provisioning"
	StatusOnline       = "online"
	StatusOffline      = "offline"
	StatusFailed       = "failed"
	StatusRemoved      = "removed"
)

var (
	// ErrNotFound: no such workspace.
	ErrNotFound = errors.New("workspace not found")
	// ErrRemoved: the workspace (or the parent named) was deleted.
	ErrRemoved = errors.New("workspace removed")
)

// Querier is a *sql.DB or a *sql.Tx.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Workspace is the host's row.
type Workspace struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	Tier            int       `json:"tier"`
	Runtime         string    `json:"runtime"`
	ParentID        string    `json:"parent_id,omitempty"`
	Status          string    `json:"status"`
	InstanceID      string    `json:"instance_id,omitempty"`
	LastSampleError string    `json:"last_sample_error,omitempty"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// Insert writes a new row in status provisioning. A parent is locked
// FOR SHARE first: a delete of that parent locks it FOR UPDATE before it
// reads the subtree, so the two serialise and a child can never be
// created under a parent whose subtree delete has already been read.
func Insert(ctx context.Context, tx *sql.Tx, w Workspace) error {
	if w.ParentID != "" {
		var status string
		err := tx.QueryRowContext(ctx, `SELECT status FROM public.workspaces WHERE id = $1 FOR SHARE`, w.ParentID).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("parent: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("lock parent: %w", err)
		}
		if status == StatusRemoved {
			return fmt.Errorf("parent: %w", ErrRemoved)
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO public.workspaces (id, name, tier, runtime, parent_id, status)
		VALUES ($1, $2, $3, $4, NULLIF($5, '')::uuid, 'provisioning')`, w.ID, w.Name, w.Tier, w.Runtime, w.ParentID)
	if err != nil {
		return fmt.Errorf("insert workspace: %w", err)
	}
	return nil
}

// Get reads one row.
func Get(ctx context.Context, q Querier, id string) (Workspace, error) {
	var w Workspace
	var parent, instance, lastErr sql.NullString
	err := q.QueryRowContext(ctx, `SELECT id, name, tier, runtime, parent_id, status, instance_id, last_sample_error, updated_at
		FROM public.workspaces WHERE id = $1`, id).
		Scan(&w.ID, &w.Name, &w.Tier, &w.Runtime, &parent, &w.Status, &instance, &lastErr, &w.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Workspace{}, ErrNotFound
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("get workspace: %w", err)
	}
	w.ParentID, w.InstanceID, w.LastSampleError = parent.String, instance.String, lastErr.String
	return w, nil
}

// LockRoot locks a subtree's root FOR UPDATE before the subtree is read,
// so a child created concurrently either committed before (and is in the
// subtree) or waits and then sees its parent removed (see Insert).
func LockRoot(ctx context.Context, tx *sql.Tx, id string) error {
	var status string
	err := tx.QueryRowContext(ctx, `SELECT status FROM public.workspaces WHERE id = $1 FOR UPDATE`, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("lock workspace: %w", err)
	}
	if status == StatusRemoved {
		return ErrRemoved
	}
	return nil
}

// MarkSubtreeRemoved marks id and every descendant not yet removed as
// removed, in one statement, and returns their ids (root first, then by
// depth). A removed node is not descended into: its subtree was removed
// with it. instance_id stays until the worker reports the instance gone.
func MarkSubtreeRemoved(ctx context.Context, tx *sql.Tx, id string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `WITH RECURSIVE sub (id, depth) AS (
			SELECT id, 0 FROM public.workspaces WHERE id = $1 AND status <> 'removed'
			UNION ALL
			SELECT w.id, sub.depth + 1 FROM public.workspaces w JOIN sub ON w.parent_id = sub.id
			WHERE w.status <> 'removed'
		), marked AS (
			UPDATE public.workspaces w SET status = 'removed', updated_at = now()
			FROM sub WHERE w.id = sub.id RETURNING w.id
		)
		SELECT sub.id FROM sub JOIN marked ON marked.id = sub.id ORDER BY sub.depth, sub.id`, id)
	if err != nil {
		return nil, fmt.Errorf("mark subtree removed: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var ids []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("mark subtree removed: %w", err)
		}
		ids = append(ids, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mark subtree removed: %w", err)
	}
	return ids, nil
}

// MarkRestarting puts a workspace back to provisioning for a restart.
func MarkRestarting(ctx context.Context, tx *sql.Tx, id string) error {
	if err := LockRoot(ctx, tx, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE public.workspaces SET status = 'provisioning', last_sample_error = NULL,
		updated_at = now() WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("mark restarting: %w", err)
	}
	return nil
}

// ApplyOutcome writes the worker's outcome into the host's row. It takes
// a jobs.Execer so the same function serves as the worker's OnOutcome
// hook (inside the worker's completing transaction) and from a handler's
// own *sql.Tx. A failed workspace shows the generic message only: the
// CP's own text can hold AMI ids and VPC paths.
//
// A missing host row is not an error: returning one would roll back the
// worker's transaction and retry the job, and a stop must never be held
// up by the host's bookkeeping.
func ApplyOutcome(ctx context.Context, ex jobs.Execer, o jobs.Outcome) error {
	var err error
	switch o.Status {
	case jobs.StatusRunning:
		_, err = ex.ExecContext(ctx, `UPDATE public.workspaces SET status = 'online', instance_id = $2,
			last_sample_error = NULL, updated_at = now() WHERE id = $1`, o.WorkspaceID, o.InstanceID)
	case jobs.StatusFailed:
		msg := o.Message
		if msg == "" {
			msg = jobs.GenericFailure
		}
		_, err = ex.ExecContext(ctx, `UPDATE public.workspaces SET status = 'failed', last_sample_error = $2,
			updated_at = now() WHERE id = $1`, o.WorkspaceID, msg)
	case jobs.StatusProvisioning:
		// A restart's stop finished and its next generation began: the
		// old instance is gone.
		_, err = ex.ExecContext(ctx, `UPDATE public.workspaces SET status = 'provisioning', instance_id = NULL,
			updated_at = now() WHERE id = $1`, o.WorkspaceID)
	case jobs.StatusStopped:
		_, err = ex.ExecContext(ctx, `UPDATE public.workspaces SET status = 'offline', instance_id = NULL,
			updated_at = now() WHERE id = $1`, o.WorkspaceID)
	case jobs.StatusRemoved:
		_, err = ex.ExecContext(ctx, `UPDATE public.workspaces SET status = 'removed', instance_id = NULL,
			updated_at = now() WHERE id = $1`, o.WorkspaceID)
	default:
		return fmt.Errorf("apply outcome: unexpected status %q", o.Status)
	}
	if err != nil {
		return fmt.Errorf("apply outcome %s: %w", o.Status, err)
	}
	return nil
}

// Instance is a host row that holds an instance id: what a cutover
// imports.
type Instance struct {
	WorkspaceID, InstanceID, Runtime, Status string
	Tier                                     int
}

// Instances lists every row holding an instance id, removed ones
// included (the old polling loop's pending stops).
func Instances(ctx context.Context, q Querier) ([]Instance, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, instance_id, runtime, tier, status FROM public.workspaces
		WHERE instance_id IS NOT NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Instance
	for rows.Next() {
		var in Instance
		if err := rows.Scan(&in.WorkspaceID, &in.InstanceID, &in.Runtime, &in.Tier, &in.Status); err != nil {
			return nil, fmt.Errorf("list instances: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
}

// EncryptedSecret is one row of workspace_secrets.
type EncryptedSecret struct {
	Key     string
	Value   []byte
	Version int
}

// PutSecrets writes a workspace's encrypted secrets.
func PutSecrets(ctx context.Context, tx *sql.Tx, workspaceID string, secrets []EncryptedSecret) error {
	for _, s := range secrets {
		_, err := tx.ExecContext(ctx, `INSERT INTO public.workspace_secrets (workspace_id, key, encrypted_value, encryption_version)
			VALUES ($1, $2, $3, $4)`, workspaceID, s.Key, s.Value, s.Version)
		if err != nil {
			return fmt.Errorf("insert secret: %w", err)
		}
	}
	return nil
}

// Secrets reads a workspace's encrypted secrets.
func Secrets(ctx context.Context, q Querier, workspaceID string) ([]EncryptedSecret, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, encrypted_value, encryption_version FROM public.workspace_secrets
		WHERE workspace_id = $1 ORDER BY key`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []EncryptedSecret
	for rows.Next() {
		var s EncryptedSecret
		if err := rows.Scan(&s.Key, &s.Value, &s.Version); err != nil {
			return nil, fmt.Errorf("read secrets: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	return out, nil
}
