package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// The cutover's statements (jobs.Import): two reads that decide every row
// and one write that registers them all, however many rows the batch
// holds. An import of the host's whole fleet is one transaction of three
// statements, not three round trips per workspace.

// ImportedRow is one (workspace, instance) pair Import registers as owned
// and running.
type ImportedRow struct {
	ID          string `json:"id"`
	InstanceID  string `json:"instance_id"`
	Nonce       string `json:"nonce"`
	Runtime     string `json:"runtime"`
	Tier        int    `json:"tier"`
	PlatformURL string `json:"platform_url"`
}

// ReadMany reads the rows of ids, in id order; lock takes them FOR UPDATE
// (an import decides under the same row lock every transition takes; its
// dry run reads without locking). Ids with no row are absent.
func (st *Store) ReadMany(ctx context.Context, db DB, ids []string, lock bool) ([]Workspace, error) {
	if lock {
		return st.LockMany(ctx, db, ids)
	}
	b, err := json.Marshal(canonicalIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("store: encode ids: %w", err)
	}
	return st.queryWorkspaces(ctx, db, `SELECT `+workspaceColumns+` FROM {schema}.workspaces
		WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb)) ORDER BY id`, string(b))
}

// InstanceClaims is what already claims each of instanceIDs: holders
// maps one that a row records to that row's workspace id (the unique
// index on instance_id answers each), and condemned holds those a live
// instance_terminate job is stopping (LockAndRecord's `Condemned`, for
// a batch; River's GIN index on args answers each). An import must
// register neither: the first is another workspace's, and the second is
// terminated whether or not a row holds it when the job runs. One
// statement, whatever the batch.
func (st *Store) InstanceClaims(ctx context.Context, db DB, instanceIDs []string) (holders map[string]string, condemned map[string]bool, err error) {
	b, err := json.Marshal(instanceIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("store: encode instance ids: %w", err)
	}
	rows, err := st.on(db).Query(ctx, `SELECT i, coalesce(holder, ''), condemned FROM (
			SELECT v.value AS i,
				(SELECT id::text FROM {schema}.workspaces WHERE instance_id = v.value) AS holder,
				EXISTS (SELECT 1 FROM {schema}.river_job WHERE kind = `+instanceTerminateKind+`
					AND args @> jsonb_build_object('instance_id', v.value) AND state IN `+liveJobStates+`) AS condemned
			FROM jsonb_array_elements_text($1::jsonb) AS v
		) AS c WHERE holder IS NOT NULL OR condemned`, string(b))
	if err != nil {
		return nil, nil, fmt.Errorf("store: read instance claims: %w", err)
	}
	defer rows.Close()
	holders, condemned = map[string]string{}, map[string]bool{}
	for rows.Next() {
		var inst, ws string
		var doomed bool
		if err := rows.Scan(&inst, &ws, &doomed); err != nil {
			return nil, nil, fmt.Errorf("store: scan instance claim: %w", err)
		}
		if ws != "" {
			holders[inst] = ws
		}
		if doomed {
			condemned[inst] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: read instance claims: %w", err)
	}
	return holders, condemned, nil
}

// ImportMany inserts every row as running, desired running, generation 1,
// with its instance recorded, and appends event (fields: instance_id,
// runtime, tier) for each row it inserted, in one statement. A row that
// conflicts with any unique index (its id, or its instance id taken by a
// transaction that committed after the caller's reads) is skipped, not an
// error: it returns the ids it inserted, and the caller reports the rest.
func (st *Store) ImportMany(ctx context.Context, tx DB, rows []ImportedRow, event, actor string) (map[string]bool, error) {
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("store: encode rows: %w", err)
	}
	res, err := st.on(tx).Query(ctx, `
		WITH r AS (
			SELECT * FROM jsonb_to_recordset($1::jsonb)
				AS r(id uuid, instance_id text, nonce text, runtime text, tier int, platform_url text)
		), ws AS (
			INSERT INTO {schema}.workspaces (id, status, desired_state, instance_id, generation, provision_nonce,
				runtime, tier, platform_url)
			SELECT id, 'running', 'running', instance_id, 1, nonce, runtime, tier, platform_url FROM r ORDER BY id
			ON CONFLICT DO NOTHING
			RETURNING id, instance_id, runtime, tier
		), ev AS (
			INSERT INTO {schema}.workspace_events (workspace_id, event, actor, fields)
			SELECT id, $2, $3, jsonb_build_object('instance_id', instance_id, 'runtime', runtime, 'tier', tier) FROM ws
		)
		SELECT id::text FROM ws`, string(b), event, actor)
	if err != nil {
		return nil, fmt.Errorf("store: import workspaces: %w", err)
	}
	defer res.Close()
	created := make(map[string]bool, len(rows))
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan imported id: %w", err)
		}
		created[id] = true
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("store: import workspaces: %w", err)
	}
	return created, nil
}
