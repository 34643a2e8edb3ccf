package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// The statements in this file each do what would otherwise take two or
// three round trips. A worker's cost is dominated by round trips to
// Postgres, not by Go: these keep a provision at six and a terminate at
// six, where the plain sequence took ten and seven.

// ProvisionStart is what StartProvision read.
type ProvisionStart struct {
	Workspace Workspace
	// Env is the stored env map; nil when it was not asked for.
	Env map[string]string
	// StoredEnv reports that a non-empty env map is stored beside the row,
	// whether or not it was read.
	StoredEnv bool
	// Pending: the row still waits for this generation and nonce.
	Pending bool
}

// StartProvision reads a row (and, when readEnv, its env) and, only when
// the row still waits for generation gen with this nonce, appends ev
// (provision.start) — one round trip. Without readEnv the stored values
// never leave the database: a worker whose env comes from the host's hook
// only learns whether any are stored (see jobs.EnvFunc).
func (st *Store) StartProvision(ctx context.Context, db DB, id string, gen int64, nonce string, ev Event, readEnv bool) (ProvisionStart, error) {
	fields, err := encodeFields(ev.Fields)
	if err != nil {
		return ProvisionStart{}, err
	}
	jobID, attempt := jobRef(ev)
	var envJSON []byte
	var out ProvisionStart
	row := st.on(db).QueryRow(ctx, `
		WITH ev AS (
			INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
			SELECT id, $4, $5, $6, $7, $8 FROM {schema}.workspaces
			WHERE id = $1 AND generation = $2 AND provision_nonce = $3
				AND status = 'provisioning' AND instance_id IS NULL
			RETURNING 1
		), stored AS (
			SELECT env FROM {schema}.workspace_env WHERE workspace_id = $1
		)
		SELECT `+workspaceColumns+`,
			CASE WHEN $9::bool THEN coalesce((SELECT env FROM stored), '{}'::jsonb) ELSE '{}'::jsonb END,
			coalesce((SELECT env <> '{}'::jsonb FROM stored), false),
			EXISTS (SELECT 1 FROM ev)
		FROM {schema}.workspaces WHERE id = $1`,
		id, gen, nonce, ev.Event, jobID, attempt, ev.Actor, fields, readEnv)
	out.Workspace, err = scanWorkspace(row, &envJSON, &out.StoredEnv, &out.Pending)
	if errors.Is(err, ErrNotFound) {
		return ProvisionStart{}, ErrNotFound
	}
	if err != nil {
		return ProvisionStart{}, fmt.Errorf("store: start provision: %w", err)
	}
	if !readEnv {
		return out, nil
	}
	out.Env = map[string]string{}
	if err := json.Unmarshal(envJSON, &out.Env); err != nil {
		return ProvisionStart{}, fmt.Errorf("store: decode env: %w", err)
	}
	return out, nil
}

// LockForRecord locks a row (as Lock) and reports in the same round trip
// whether a live instance_terminate has condemned instanceID.
func (st *Store) LockForRecord(ctx context.Context, tx DB, id, instanceID string) (Workspace, bool, error) {
	var condemned bool
	ws, err := scanWorkspace(st.on(tx).QueryRow(ctx, `
		SELECT `+workspaceColumns+`,
			EXISTS (SELECT 1 FROM {schema}.river_job WHERE kind = `+instanceTerminateKind+`
				AND args @> jsonb_build_object('instance_id', $2::text) AND state IN `+liveJobStates+`)
		FROM {schema}.workspaces WHERE id = $1 FOR UPDATE`, id, instanceID), &condemned)
	if errors.Is(err, ErrNotFound) {
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
