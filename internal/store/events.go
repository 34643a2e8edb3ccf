package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Event is one line of a workspace's timeline. Fields hold ids, states and
// CP messages; never env values or credentials.
type Event struct {
	WorkspaceID string
	Event       string
	JobID       int64 // 0 when no job
	Attempt     int   // 0 when no job
	Actor       string
	Fields      map[string]any
	At          time.Time // set on read
}

// AppendEvent writes ev in tx, the same transaction as the state change it
// describes, so the timeline never shows a change that rolled back.
func (st *Store) AppendEvent(ctx context.Context, db DB, ev Event) error {
	b, err := encodeFields(ev.Fields)
	if err != nil {
		return err
	}
	jobID, attempt := jobRef(ev)
	_, err = st.on(db).Exec(ctx, `
		INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		ev.WorkspaceID, ev.Event, jobID, attempt, ev.Actor, b)
	if err != nil {
		return fmt.Errorf("store: append event %s: %w", ev.Event, err)
	}
	return nil
}

// Events reads a workspace's timeline in time order.
func (st *Store) Events(ctx context.Context, db DB, workspaceID string) ([]Event, error) {
	rows, err := st.on(db).Query(ctx, `
		SELECT event, coalesce(job_id, 0), coalesce(attempt, 0), actor, fields, at
		FROM {schema}.workspace_events WHERE workspace_id = $1 ORDER BY at, id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("store: read events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		ev := Event{WorkspaceID: workspaceID}
		var b []byte
		if err := rows.Scan(&ev.Event, &ev.JobID, &ev.Attempt, &ev.Actor, &b, &ev.At); err != nil {
			return nil, fmt.Errorf("store: scan event: %w", err)
		}
		if err := json.Unmarshal(b, &ev.Fields); err != nil {
			return nil, fmt.Errorf("store: decode event fields: %w", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read events: %w", err)
	}
	return out, nil
}

// PruneEvents deletes timeline lines older than the retention period, in
// bounded batches so a large backlog never holds a long lock.
func (st *Store) PruneEvents(ctx context.Context, db DB, olderThan time.Duration, batch int) (int64, error) {
	tag, err := st.on(db).Exec(ctx, `
		DELETE FROM {schema}.workspace_events WHERE id IN (
			SELECT id FROM {schema}.workspace_events WHERE at < now() - $1::interval ORDER BY at LIMIT $2)`,
		interval(olderThan), batch)
	if err != nil {
		return 0, fmt.Errorf("store: prune events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// StoppedInstances returns the instance ids the workspace's own stops
// were confirmed for: the instance_id, and any listed_instance_ids, of
// its events named in events (the stop and orphan-terminate events, which
// commit in the transaction that ends the stop). EC2 is eventually
// consistent: for a few seconds after a 2xx terminate the CP may still
// list an instance as running, and a retried provision once adopted its
// previous generation's dead instance from that list.
func (st *Store) StoppedInstances(ctx context.Context, db DB, workspaceID string, events []string) (map[string]bool, error) {
	rows, err := st.on(db).Query(ctx, `
		SELECT DISTINCT s.iid FROM {schema}.workspace_events e, LATERAL (
			SELECT e.fields->>'instance_id'
			UNION ALL
			SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(e.fields->'listed_instance_ids') = 'array'
				THEN e.fields->'listed_instance_ids' ELSE '[]'::jsonb END)
		) AS s(iid)
		WHERE e.workspace_id = $1 AND e.event = ANY($2) AND coalesce(s.iid, '') <> ''`, workspaceID, events)
	if err != nil {
		return nil, fmt.Errorf("store: read stopped instances: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan stopped instance: %w", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read stopped instances: %w", err)
	}
	return out, nil
}

// UnstoppedNotes returns, oldest first, the instance ids of the
// workspace's note events (provision.unrecorded: an instance id the CP
// answered that no record could commit), only job jobID's unless jobID is
// 0, that none of the stop events names since. One statement for both of
// its readers: a stop request on a failed row with no instance id, which
// must not decide there is nothing to stop, and the worker handing off or
// stopping what the notes name.
func (st *Store) UnstoppedNotes(ctx context.Context, db DB, workspaceID string, jobID int64, note string, stopEvents []string) ([]string, error) {
	rows, err := st.on(db).Query(ctx, `
		SELECT n.fields->>'instance_id' FROM {schema}.workspace_events n
		WHERE n.workspace_id = $1 AND n.event = $2 AND coalesce(n.fields->>'instance_id', '') <> ''
		AND ($4::bigint = 0 OR n.job_id = $4::bigint)
		AND NOT EXISTS (
			SELECT 1 FROM {schema}.workspace_events s
			WHERE s.workspace_id = $1 AND s.event = ANY($3)
			AND (s.fields->>'instance_id' = n.fields->>'instance_id'
				OR (jsonb_typeof(s.fields->'listed_instance_ids') = 'array'
					AND s.fields->'listed_instance_ids' @> jsonb_build_array(n.fields->>'instance_id'))))
		GROUP BY 1 ORDER BY min(n.id)`,
		workspaceID, note, stopEvents, jobID)
	if err != nil {
		return nil, fmt.Errorf("store: read unrecorded notes: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan unrecorded note: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read unrecorded notes: %w", err)
	}
	return ids, nil
}

// CountJobEvents counts the workspace's timeline events named event that
// job jobID wrote.
func (st *Store) CountJobEvents(ctx context.Context, db DB, workspaceID string, jobID int64, event string) (int, error) {
	var n int
	err := st.on(db).QueryRow(ctx, `
		SELECT count(*) FROM {schema}.workspace_events WHERE workspace_id = $1 AND job_id = $2 AND event = $3`,
		workspaceID, jobID, event).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count job events: %w", err)
	}
	return n, nil
}
