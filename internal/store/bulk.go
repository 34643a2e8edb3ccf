package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// The bulk statements pass their rows as one JSON array read with
// jsonb_to_recordset: one parameter of text, which lib/pq, pgx's stdlib
// and pgx encode alike (lib/pq cannot bind a Go slice as a Postgres
// array), and one statement per table however many rows the batch holds.

// NewRow is one row CreateMany inserts.
type NewRow struct {
	ID          string            `json:"id"`
	Nonce       string            `json:"nonce"`
	Runtime     string            `json:"runtime"`
	Tier        int               `json:"tier"`
	PlatformURL string            `json:"platform_url"`
	Env         map[string]string `json:"env"`
}

// CreateMany inserts every row that does not exist yet, at generation 1
// in provisioning, with its env, in one statement. It returns the rows it
// created; an id missing from the answer already had a row (or a
// concurrent transaction created it).
func (st *Store) CreateMany(ctx context.Context, tx DB, rows []NewRow) ([]Workspace, error) {
	for i := range rows {
		if rows[i].Env == nil {
			rows[i].Env = map[string]string{}
		}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("store: encode rows: %w", err)
	}
	return st.queryWorkspaces(ctx, tx, `
		WITH r AS (
			SELECT * FROM jsonb_to_recordset($1::jsonb)
				AS r(id uuid, nonce text, runtime text, tier int, platform_url text, env jsonb)
		), ws AS (
			INSERT INTO {schema}.workspaces (id, status, desired_state, generation, provision_nonce, runtime, tier, platform_url)
			SELECT id, 'provisioning', 'running', 1, nonce, runtime, tier, platform_url FROM r ORDER BY id
			ON CONFLICT (id) DO NOTHING
			RETURNING `+workspaceColumns+`
		), env AS (
			INSERT INTO {schema}.workspace_env (workspace_id, env)
			SELECT r.id, r.env FROM r JOIN ws ON ws.id = r.id::text
		)
		SELECT * FROM ws`, string(b))
}

// LockMany reads the rows of ids under FOR UPDATE, in id order so two
// batches over overlapping ids lock in the same order and cannot
// deadlock. Ids with no row are simply absent from the answer.
func (st *Store) LockMany(ctx context.Context, tx DB, ids []string) ([]Workspace, error) {
	b, err := json.Marshal(canonicalIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("store: encode ids: %w", err)
	}
	return st.queryWorkspaces(ctx, tx, `SELECT `+workspaceColumns+` FROM {schema}.workspaces
		WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))
		ORDER BY id FOR UPDATE`, string(b))
}

// MarkStoppingMany is MarkStopping for many rows in one statement; it
// returns the rows as they now are.
func (st *Store) MarkStoppingMany(ctx context.Context, tx DB, ids []string, desired string) ([]Workspace, error) {
	b, err := json.Marshal(canonicalIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("store: encode ids: %w", err)
	}
	return st.queryWorkspaces(ctx, tx, `
		UPDATE {schema}.workspaces SET status = 'stopping', desired_state = $2, updated_at = now(),
			status_changed_at = CASE WHEN status = 'stopping' THEN status_changed_at ELSE now() END
		WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))
		RETURNING `+workspaceColumns, string(b), desired)
}

// DeleteEnvMany is DeleteEnv for many workspaces in one statement.
func (st *Store) DeleteEnvMany(ctx context.Context, tx DB, ids []string) error {
	b, err := json.Marshal(canonicalIDs(ids))
	if err != nil {
		return fmt.Errorf("store: encode ids: %w", err)
	}
	_, err = st.on(tx).Exec(ctx, `DELETE FROM {schema}.workspace_env
		WHERE workspace_id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))`, string(b))
	if err != nil {
		return fmt.Errorf("store: delete env: %w", err)
	}
	return nil
}

// LockLiveJobsMany is LockLiveJobs for many workspaces in one statement:
// one GIN lookup per id (the LATERAL subquery, kept apart by OFFSET 0:
// with args @> ANY (...) or a plain join Postgres scanned the whole table
// once instead), then the jobs locked in id order, as before.
func (st *Store) LockLiveJobsMany(ctx context.Context, tx DB, kind string, ids []string) ([]JobRef, error) {
	b, err := json.Marshal(canonicalIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("store: encode ids: %w", err)
	}
	return st.queryJobs(ctx, tx, `
		SELECT j.id, j.kind, j.state::text, j.attempt, j.attempted_at IS NOT NULL FROM {schema}.river_job j
		WHERE j.id IN (
			SELECT m.id FROM (SELECT DISTINCT value FROM jsonb_array_elements_text($2::jsonb)) AS v,
			LATERAL (SELECT k.id FROM {schema}.river_job k
				WHERE k.args @> jsonb_build_object('workspace_id', v.value)
					AND `+unindexed("k.kind")+` = $1 AND `+unindexed("k.state")+` IN `+liveJobStates+`
				OFFSET 0) AS m)
			AND `+unindexed("j.kind")+` = $1 AND `+unindexed("j.state")+` IN `+liveJobStates+`
		ORDER BY j.id FOR UPDATE`, kind, string(b))
}

type eventRow struct {
	WorkspaceID string          `json:"workspace_id"`
	Event       string          `json:"event"`
	JobID       *int64          `json:"job_id"`
	Attempt     *int            `json:"attempt"`
	Actor       string          `json:"actor"`
	Fields      json.RawMessage `json:"fields"`
}

// AppendEvents is AppendEvent for many lines in one statement.
func (st *Store) AppendEvents(ctx context.Context, db DB, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	rows := make([]eventRow, len(evs))
	for i, ev := range evs {
		b, err := encodeFields(ev.Fields)
		if err != nil {
			return err
		}
		jobID, attempt := jobRef(ev)
		rows[i] = eventRow{WorkspaceID: ev.WorkspaceID, Event: ev.Event, JobID: jobID, Attempt: attempt, Actor: ev.Actor, Fields: json.RawMessage(b)}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("store: encode events: %w", err)
	}
	_, err = st.on(db).Exec(ctx, `
		INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
		SELECT workspace_id, event, job_id, attempt, actor, fields FROM jsonb_to_recordset($1::jsonb)
			AS r(workspace_id uuid, event text, job_id bigint, attempt int, actor text, fields jsonb)`, string(b))
	if err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	return nil
}

func (st *Store) queryWorkspaces(ctx context.Context, db DB, sql string, args ...any) ([]Workspace, error) {
	rows, err := st.on(db).Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query workspaces: %w", err)
	}
	defer rows.Close()
	var out []Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query workspaces: %w", err)
	}
	return out, nil
}
