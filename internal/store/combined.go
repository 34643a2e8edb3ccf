package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The statements in this file each do what would otherwise take two or
// three round trips. A worker's cost is dominated by round trips to
// Postgres, not by Go: these keep a provision at six and a terminate at
// six, where the plain sequence took ten and seven.

// StartProvision reads a row and its env and, only when the row still
// waits for generation gen with this nonce, appends ev (provision.start)
// — one round trip. pending reports that condition.
func (st *Store) StartProvision(ctx context.Context, db DB, id string, gen int64, nonce string, ev Event) (ws Workspace, env map[string]string, pending bool, err error) {
	fields, err := encodeFields(ev.Fields)
	if err != nil {
		return Workspace{}, nil, false, err
	}
	jobID, attempt := jobRef(ev)
	var envJSON []byte
	row := st.on(db).QueryRow(ctx, `
		WITH ev AS (
			INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
			SELECT id, $4, $5, $6, $7, $8 FROM {schema}.workspaces
			WHERE id = $1 AND generation = $2 AND provision_nonce = $3
				AND status = 'provisioning' AND instance_id IS NULL
			RETURNING 1
		)
		SELECT `+workspaceColumns+`,
			coalesce((SELECT env FROM {schema}.workspace_env WHERE workspace_id = $1), '{}'::jsonb),
			EXISTS (SELECT 1 FROM ev)
		FROM {schema}.workspaces WHERE id = $1`,
		id, gen, nonce, ev.Event, jobID, attempt, ev.Actor, fields)
	err = row.Scan(&ws.ID, &ws.Status, &ws.Desired, &ws.InstanceID, &ws.Generation, &ws.Nonce,
		&ws.Runtime, &ws.Tier, &ws.PlatformURL, &ws.LastError, &ws.CreatedAt, &ws.UpdatedAt, &ws.StatusChangedAt,
		&envJSON, &pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workspace{}, nil, false, ErrNotFound
	}
	if err != nil {
		return Workspace{}, nil, false, fmt.Errorf("store: start provision: %w", err)
	}
	env = map[string]string{}
	if err := json.Unmarshal(envJSON, &env); err != nil {
		return Workspace{}, nil, false, fmt.Errorf("store: decode env: %w", err)
	}
	return ws, env, pending, nil
}

// LockForRecord locks a row (as Lock) and reports in the same round trip
// whether a live instance_terminate has condemned instanceID.
func (st *Store) LockForRecord(ctx context.Context, tx DB, id, instanceID string) (Workspace, bool, error) {
	var ws Workspace
	var condemned bool
	err := st.on(tx).QueryRow(ctx, `
		SELECT `+workspaceColumns+`,
			EXISTS (SELECT 1 FROM {schema}.river_job WHERE kind = 'instance_terminate'
				AND args @> jsonb_build_object('instance_id', $2::text) AND state IN `+liveJobStates+`)
		FROM {schema}.workspaces WHERE id = $1 FOR UPDATE`, id, instanceID).
		Scan(&ws.ID, &ws.Status, &ws.Desired, &ws.InstanceID, &ws.Generation, &ws.Nonce,
			&ws.Runtime, &ws.Tier, &ws.PlatformURL, &ws.LastError, &ws.CreatedAt, &ws.UpdatedAt, &ws.StatusChangedAt,
			&condemned)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workspace{}, false, ErrNotFound
	}
	if err != nil {
		return Workspace{}, false, fmt.Errorf("store: lock for record: %w", err)
	}
	return ws, condemned, nil
}

// RecordInstanceWithEvent is RecordInstance plus ev, appended only when
// the row was updated, in one statement.
func (st *Store) RecordInstanceWithEvent(ctx context.Context, tx DB, id string, gen int64, instanceID string, ev Event) (bool, error) {
	return st.updateWithEvent(ctx, tx, recordInstanceSQL, []any{id, gen, instanceID}, ev)
}

// MarkStoppedWithEvent finishes a stop (markStoppedSQL) and appends ev,
// in one statement.
func (st *Store) MarkStoppedWithEvent(ctx context.Context, tx DB, id, instanceID string, ev Event) (bool, error) {
	return st.updateWithEvent(ctx, tx, markStoppedSQL, []any{id, instanceID}, ev)
}

// updateWithEvent runs update (which must RETURNING id and use $1..$n for
// args) and appends ev for the updated row, reporting whether one was.
func (st *Store) updateWithEvent(ctx context.Context, tx DB, update string, args []any, ev Event) (bool, error) {
	fields, err := encodeFields(ev.Fields)
	if err != nil {
		return false, err
	}
	jobID, attempt := jobRef(ev)
	n := len(args)
	sql := fmt.Sprintf(`
		WITH upd AS (%s)
		INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
		SELECT id, $%d, $%d, $%d, $%d, $%d FROM upd`, update, n+1, n+2, n+3, n+4, n+5)
	tag, err := st.on(tx).Exec(ctx, sql, append(args, ev.Event, jobID, attempt, ev.Actor, fields)...)
	if err != nil {
		return false, fmt.Errorf("store: update with event %s: %w", ev.Event, err)
	}
	return tag.RowsAffected() == 1, nil
}

// encodeFields encodes an event's fields as JSON text, a parameter every
// driver (pgx, lib/pq, pgx's stdlib) hands to a jsonb column the same way.
func encodeFields(fields map[string]any) (string, error) {
	if fields == nil {
		fields = map[string]any{}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return "", fmt.Errorf("store: encode event fields: %w", err)
	}
	return string(b), nil
}

func jobRef(ev Event) (*int64, *int) {
	if ev.JobID == 0 {
		return nil, nil
	}
	return &ev.JobID, &ev.Attempt
}
