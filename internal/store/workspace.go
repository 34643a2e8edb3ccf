// Package store owns every SQL statement the worker runs against the
// project's tables (and the few reads of River's job table the state
// machine needs). Workers call named functions so the state machine reads
// as Go and every query is in one place to review.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Statuses of a workspace row (docs/design.md#statuses).
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusStopping     = "stopping"
	StatusStopped      = "stopped"
	StatusRemoved      = "removed"
	StatusFailed       = "failed"
)

// Desired states: what the latest request asked for.
const (
	DesiredRunning = "running"
	DesiredStopped = "stopped"
	DesiredDeleted = "deleted"
)

// ErrNotFound is returned when no workspace row has the id.
var ErrNotFound = errors.New("store: workspace not found")

// DB is what both a pool and a transaction offer; reads take either.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Workspace is one row of the workspaces table.
type Workspace struct {
	ID              string
	Status          string
	Desired         string
	InstanceID      string // "" until the CP answers
	Generation      int64
	Nonce           string
	Runtime         string
	Tier            int
	PlatformURL     string
	LastError       string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	StatusChangedAt time.Time
}

// workspaceColumns are a Workspace's columns in the order scanWorkspace
// reads them: every statement that returns a row selects these first, so
// a column added to Workspace is added here and in scanWorkspace only.
const workspaceColumns = `id::text, status, desired_state, coalesce(instance_id, ''), generation,
	provision_nonce, runtime, tier, platform_url, coalesce(last_error, ''), created_at, updated_at, status_changed_at`

// scanWorkspace reads a row that starts with workspaceColumns; extra
// receive the columns a statement selects after them. No row is
// ErrNotFound.
func scanWorkspace(row pgx.Row, extra ...any) (Workspace, error) {
	var w Workspace
	err := row.Scan(append([]any{&w.ID, &w.Status, &w.Desired, &w.InstanceID, &w.Generation, &w.Nonce,
		&w.Runtime, &w.Tier, &w.PlatformURL, &w.LastError, &w.CreatedAt, &w.UpdatedAt, &w.StatusChangedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workspace{}, ErrNotFound
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("store: scan workspace: %w", err)
	}
	return w, nil
}

// Get reads a workspace without locking it (workers read before a CP call
// and decide again under the lock afterwards).
func (st *Store) Get(ctx context.Context, db DB, id string) (Workspace, error) {
	return scanWorkspace(st.on(db).QueryRow(ctx, `SELECT `+workspaceColumns+` FROM {schema}.workspaces WHERE id = $1`, id))
}

// Lock reads a workspace under FOR UPDATE. Every transition takes this
// lock first, so recording an instance, adopting one and condemning one as
// an orphan are serialised per workspace.
func (st *Store) Lock(ctx context.Context, tx DB, id string) (Workspace, error) {
	return scanWorkspace(st.on(tx).QueryRow(ctx, `SELECT `+workspaceColumns+` FROM {schema}.workspaces WHERE id = $1 FOR UPDATE`, id))
}

// NewNonce mints the random token of a generation. It makes the provision
// job's unique key differ from any job left over from a restored database
// or a deleted-and-recreated row that reached the same generation number.
func NewNonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Create inserts a new row at generation 1 in status provisioning, with
// its env, in one statement (a handler's transaction pays one round trip
// for both). It reports false, and no row, when the row already exists.
func (st *Store) Create(ctx context.Context, tx DB, w Workspace, env map[string]string) (Workspace, bool, error) {
	if env == nil {
		env = map[string]string{}
	}
	b, err := json.Marshal(env)
	if err != nil {
		return Workspace{}, false, fmt.Errorf("store: encode env: %w", err)
	}
	created, err := scanWorkspace(st.on(tx).QueryRow(ctx, `
		WITH ws AS (
			INSERT INTO {schema}.workspaces (id, status, desired_state, generation, provision_nonce, runtime, tier, platform_url)
			VALUES ($1, 'provisioning', 'running', 1, $2, $3, $4, $5)
			ON CONFLICT (id) DO NOTHING
			RETURNING `+workspaceColumns+`
		), env AS (
			INSERT INTO {schema}.workspace_env (workspace_id, env) SELECT id::uuid, $6 FROM ws
		)
		SELECT * FROM ws`,
		w.ID, w.Nonce, w.Runtime, w.Tier, w.PlatformURL, string(b)))
	if errors.Is(err, ErrNotFound) {
		return Workspace{}, false, nil
	}
	if err != nil {
		return Workspace{}, false, fmt.Errorf("store: create workspace: %w", err)
	}
	return created, true, nil
}

// Spec is the frozen request of a generation: what the CP is asked to run.
type Spec struct {
	Runtime     string
	Tier        int
	PlatformURL string
}

// StartGeneration bumps the generation of a row that is stopped, removed,
// failed (without an instance) or stopping (a restart's terminate
// completing), and moves it to provisioning with a fresh nonce and no
// instance. spec, when non-nil, replaces the frozen request.
func (st *Store) StartGeneration(ctx context.Context, tx DB, id string, fromGen int64, nonce string, spec *Spec) (Workspace, error) {
	var runtime, platformURL *string
	var tier *int
	if spec != nil {
		runtime, tier, platformURL = &spec.Runtime, &spec.Tier, &spec.PlatformURL
	}
	return scanWorkspace(st.on(tx).QueryRow(ctx, `
		UPDATE {schema}.workspaces SET
			generation = generation + 1, provision_nonce = $3, status = 'provisioning',
			desired_state = 'running', instance_id = NULL, last_error = NULL,
			runtime = coalesce($4, runtime), tier = coalesce($5, tier),
			platform_url = coalesce($6, platform_url),
			updated_at = now(), status_changed_at = now()
		WHERE id = $1 AND generation = $2 AND instance_id IS NULL
		RETURNING `+workspaceColumns,
		id, fromGen, nonce, runtime, tier, platformURL))
}

// SetSpec replaces the frozen request a row's next generation will use.
func (st *Store) SetSpec(ctx context.Context, tx DB, id string, spec Spec) error {
	_, err := st.on(tx).Exec(ctx, `UPDATE {schema}.workspaces SET runtime = $2, tier = $3, platform_url = $4, updated_at = now() WHERE id = $1`,
		id, spec.Runtime, spec.Tier, spec.PlatformURL)
	if err != nil {
		return fmt.Errorf("store: set spec: %w", err)
	}
	return nil
}

// SetEnv stores the env map beside the row. It is read by the worker at
// call time and never copied into job args, events or logs.
func (st *Store) SetEnv(ctx context.Context, tx DB, id string, env map[string]string) error {
	if env == nil {
		env = map[string]string{}
	}
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("store: encode env: %w", err)
	}
	_, err = st.on(tx).Exec(ctx, `
		INSERT INTO {schema}.workspace_env (workspace_id, env) VALUES ($1, $2)
		ON CONFLICT (workspace_id) DO UPDATE SET env = excluded.env`, id, string(b))
	if err != nil {
		return fmt.Errorf("store: set env: %w", err)
	}
	return nil
}

// DeleteEnv drops the env map of a workspace. A deleted workspace's
// secrets were kept in workspace_env (and so in every later backup) for
// as long as its row lived.
func (st *Store) DeleteEnv(ctx context.Context, tx DB, id string) error {
	if _, err := st.on(tx).Exec(ctx, `DELETE FROM {schema}.workspace_env WHERE workspace_id = $1`, id); err != nil {
		return fmt.Errorf("store: delete env: %w", err)
	}
	return nil
}

// Env reads the env map of a workspace (empty when none was stored).
func (st *Store) Env(ctx context.Context, db DB, id string) (map[string]string, error) {
	var b []byte
	err := st.on(db).QueryRow(ctx, `SELECT env FROM {schema}.workspace_env WHERE workspace_id = $1`, id).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read env: %w", err)
	}
	env := map[string]string{}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("store: decode env: %w", err)
	}
	return env, nil
}

// recordInstanceSQL moves a provisioning row of generation $2 to running
// with instance $3. It never overwrites a recorded id: it matches no row
// when the row moved on, so the caller hands the instance to an
// instance_terminate job instead (invariant "every instance owned",
// docs/design.md).
const recordInstanceSQL = `
		UPDATE {schema}.workspaces SET instance_id = $3, status = 'running', last_error = NULL,
			updated_at = now(), status_changed_at = now()
		WHERE id = $1 AND generation = $2 AND status = 'provisioning' AND instance_id IS NULL
		RETURNING id`

// RecordInstance runs recordInstanceSQL, reporting whether it matched.
func (st *Store) RecordInstance(ctx context.Context, tx DB, id string, gen int64, instanceID string) (bool, error) {
	tag, err := st.on(tx).Exec(ctx, recordInstanceSQL, id, gen, instanceID)
	if err != nil {
		return false, fmt.Errorf("store: record instance: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// MarkFailed moves a row of generation gen from status from to failed,
// keeping any recorded instance id so a later terminate can still find it.
func (st *Store) MarkFailed(ctx context.Context, tx DB, id string, gen int64, from, reason string) (bool, error) {
	tag, err := st.on(tx).Exec(ctx, `
		UPDATE {schema}.workspaces SET status = 'failed', last_error = $4, updated_at = now(), status_changed_at = now()
		WHERE id = $1 AND generation = $2 AND status = $3`,
		id, gen, from, reason)
	if err != nil {
		return false, fmt.Errorf("store: mark failed: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// MarkStopping moves a row to stopping with the given desired state.
func (st *Store) MarkStopping(ctx context.Context, tx DB, id, desired string) error {
	_, err := st.on(tx).Exec(ctx, `
		UPDATE {schema}.workspaces SET status = 'stopping', desired_state = $2, updated_at = now(),
			status_changed_at = CASE WHEN status = 'stopping' THEN status_changed_at ELSE now() END
		WHERE id = $1`, id, desired)
	if err != nil {
		return fmt.Errorf("store: mark stopping: %w", err)
	}
	return nil
}

// SetDesired records what the latest request asked for without changing
// the status (a stop arriving while one is already under way).
func (st *Store) SetDesired(ctx context.Context, tx DB, id, desired string) error {
	if _, err := st.on(tx).Exec(ctx, `UPDATE {schema}.workspaces SET desired_state = $2, updated_at = now() WHERE id = $1`, id, desired); err != nil {
		return fmt.Errorf("store: set desired: %w", err)
	}
	return nil
}

// MarkStoppedNoInstance stops a failed row that never got an instance:
// nothing runs, so no CP call is needed.
func (st *Store) MarkStoppedNoInstance(ctx context.Context, tx DB, id, desired string) error {
	_, err := st.on(tx).Exec(ctx, `
		UPDATE {schema}.workspaces SET desired_state = $2,
			status = CASE WHEN $2 = 'deleted' THEN 'removed' ELSE 'stopped' END,
			updated_at = now(), status_changed_at = now()
		WHERE id = $1 AND instance_id IS NULL`, id, desired)
	if err != nil {
		return fmt.Errorf("store: mark stopped: %w", err)
	}
	return nil
}

// ClearInstanceForStop drops the recorded id of a stopping row once the
// CP confirmed it gone, keeping the row in stopping (used before starting
// the next generation of a restart).
func (st *Store) ClearInstanceForStop(ctx context.Context, tx DB, id, instanceID string) (bool, error) {
	tag, err := st.on(tx).Exec(ctx, `
		UPDATE {schema}.workspaces SET instance_id = NULL, updated_at = now()
		WHERE id = $1 AND status = 'stopping' AND coalesce(instance_id, '') = $2`, id, instanceID)
	if err != nil {
		return false, fmt.Errorf("store: clear instance: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
