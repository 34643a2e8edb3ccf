package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// sweepLockKey is the Postgres advisory lock every orphan sweep holds.
// Periodic jobs are inserted by the leader but worked by any worker, and
// `enqueue sweep` adds manual ones, so without it two sweeps could overlap
// and double-count (or double-act on) the same strays.
const sweepLockKey int64 = 0x6f7270685f737770 // "orph_swp"

// TryLockSweep takes the sweep lock on db's session (a dedicated
// connection: the lock is held by the session, not a transaction, so no
// transaction stays open across the sweep's CP calls). It reports false
// when another sweep holds it.
func (st *Store) TryLockSweep(ctx context.Context, db DB) (bool, error) {
	var ok bool
	if err := st.on(db).QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, sweepLockKey).Scan(&ok); err != nil {
		return false, fmt.Errorf("store: try sweep lock: %w", err)
	}
	return ok, nil
}

// UnlockSweep releases the sweep lock taken by TryLockSweep on the same
// session.
func (st *Store) UnlockSweep(ctx context.Context, db DB) error {
	var ok bool
	if err := st.on(db).QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, sweepLockKey).Scan(&ok); err != nil {
		return fmt.Errorf("store: release sweep lock: %w", err)
	}
	if !ok {
		return errors.New("store: sweep lock was not held by this session")
	}
	return nil
}

// CountWorkspaces counts every row: the database side's examined total.
func (st *Store) CountWorkspaces(ctx context.Context, db DB) (int, error) {
	var n int
	if err := st.on(db).QueryRow(ctx, `SELECT count(*) FROM {schema}.workspaces`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count workspaces: %w", err)
	}
	return n, nil
}

// SuspectRow is a row the database side of the sweep may have to re-drive,
// with the job facts that decide it.
type SuspectRow struct {
	ID              string
	Status          string
	Desired         string
	InstanceID      string
	Generation      int64
	StatusChangedAt time.Time
	PastDeadline    bool // status_changed_at older than the provisioning deadline
	LiveJob         bool // a live terminate (stopping) or provision (provisioning) job exists
	// DeadJobID is the newest discarded/cancelled terminate job of a
	// stopping row, or provision job of a provisioning row's generation;
	// 0 if none.
	DeadJobID    int64
	DeadJobState string // its state
	DeadJobError string // the text of its last recorded error
}

// suspectSelect reads suspects with their job facts. $1 is the
// provisioning deadline. The job lookups use args @> so River's GIN index on args serves them, and
// run only for the few rows the WHERE clause keeps.
var suspectSelect = `
	SELECT w.id::text, w.status, w.desired_state, coalesce(w.instance_id, ''), w.generation, w.status_changed_at,
		w.status_changed_at < now() - $1::interval,
		CASE WHEN w.status IN ('stopping', 'provisioning') THEN EXISTS (
			SELECT 1 FROM {schema}.river_job j
			WHERE j.kind = CASE WHEN w.status = 'provisioning' THEN ` + provisionKind + ` ELSE ` + terminateKind + ` END
				AND j.args @> jsonb_build_object('workspace_id', w.id::text)
				AND j.state IN ` + liveJobStates + `) ELSE false END,
		coalesce(d.id, 0), coalesce(d.state::text, ''),
		coalesce(d.errors[array_length(d.errors, 1)]->>'error', '')
	FROM {schema}.workspaces w
	LEFT JOIN LATERAL (
		SELECT j.id, j.state, j.errors FROM {schema}.river_job j
		WHERE ((w.status = 'stopping' AND j.kind = ` + terminateKind + `
				AND j.args @> jsonb_build_object('workspace_id', w.id::text))
			OR (w.status = 'provisioning' AND j.kind = ` + provisionKind + `
				AND j.args @> jsonb_build_object('workspace_id', w.id::text, 'generation', w.generation)))
			AND j.state IN ` + deadJobStates + `
		ORDER BY j.id DESC LIMIT 1) d ON true`

// suspectWhere keeps rows that hold an instance id they should not, rows
// in stopping, and provisioning rows past the deadline. It must keep
// implying the predicate of the partial index workspaces_suspect_idx
// (migrations/00010): that index is how a page reads only suspects
// instead of walking every row in id order.
const suspectWhere = `(
		(w.status IN ('stopped', 'removed', 'failed') AND w.instance_id IS NOT NULL)
		OR w.status = 'stopping'
		OR (w.status = 'provisioning' AND w.status_changed_at < now() - $1::interval))`

// suspectPage is SuspectRows' statement; keyset adds the id lower bound
// $3 of every page after the first.
func suspectPage(keyset bool) string {
	if keyset {
		return suspectSelect + ` WHERE ` + suspectWhere + ` AND w.id > $3::uuid ORDER BY w.id LIMIT $2`
	}
	return suspectSelect + ` WHERE ` + suspectWhere + ` ORDER BY w.id LIMIT $2`
}

// SuspectRows reads one page of suspects after the id after ("" for the
// first page), in id order: keyset paging, so memory stays flat however
// many rows there are and rows changed by the sweep are never revisited.
func (st *Store) SuspectRows(ctx context.Context, db DB, deadline time.Duration, after string, limit int) ([]SuspectRow, error) {
	args := []any{interval(deadline), limit}
	if after != "" {
		args = append(args, after)
	}
	rows, err := st.on(db).Query(ctx, suspectPage(after != ""), args...)
	if err != nil {
		return nil, fmt.Errorf("store: read sweep suspects: %w", err)
	}
	defer rows.Close()
	out := make([]SuspectRow, 0, limit)
	for rows.Next() {
		s, err := scanSuspect(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read sweep suspects: %w", err)
	}
	return out, nil
}

// LockSuspect re-reads one row and its job facts under FOR UPDATE, the
// lock every transition takes, so the sweep decides again on what is
// committed now rather than on its page read.
func (st *Store) LockSuspect(ctx context.Context, tx DB, deadline time.Duration, id string) (SuspectRow, error) {
	row := st.on(tx).QueryRow(ctx, suspectSelect+` WHERE w.id = $2::uuid FOR UPDATE OF w`,
		interval(deadline), id)
	s, err := scanSuspect(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return SuspectRow{}, ErrNotFound
	}
	return s, err
}

func scanSuspect(row pgx.Row) (SuspectRow, error) {
	var s SuspectRow
	err := row.Scan(&s.ID, &s.Status, &s.Desired, &s.InstanceID, &s.Generation, &s.StatusChangedAt,
		&s.PastDeadline, &s.LiveJob, &s.DeadJobID, &s.DeadJobState, &s.DeadJobError)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, err
	}
	if err != nil {
		return s, fmt.Errorf("store: scan sweep suspect: %w", err)
	}
	return s, nil
}

// InstanceOwner is what the database says about one listed instance.
// Only Recorded is filled for a recorded instance: the sweep leaves it
// alone whoever records it, and reading its workspace's row cost a heap
// fetch per listed instance (see instanceOwnersSelect). The other fields
// describe an unrecorded one.
type InstanceOwner struct {
	WorkspaceExists bool
	Status          string // the listed workspace's status, "" when no row
	RowInstanceID   string // the id that workspace records, "" when none
	Recorded        bool   // the instance id is recorded on some row
	Condemned       bool   // a live instance_terminate already holds it
}

// instanceOwnersSelect reads one CP page's owners. $1 are the instance
// ids, $2 their workspace ids.
//
// The workspace ids go over the wire as text[] and are cast in SQL: pgx
// cannot encode a Go string as a uuid element, and for $2::uuid[] it
// built (and threw away) an encode error per element before falling back
// to text, about 50 MB of garbage per million listed instances.
//
// Whether an instance is recorded is asked of workspaces_instance_id_idx
// alone (an index-only scan: the index, about 50 MB at 1M rows, stays in
// shared_buffers, and a vacuumed table's visibility map spares the heap).
// The workspace's row, and the live instance_terminate, are read only for
// the few instances no row records (the strays and young launches). The
// old statement joined every listed instance to its workspace's row by
// primary key: a random heap page per listed instance, read from outside
// shared_buffers once the table (about 260 MB at 1M rows) outgrew it,
// 11-17 ms a page of 1,000. The CTE is materialized and its two halves
// filtered apart because a LEFT JOIN's ON clause that tests only the outer
// side is a join filter: the planner probed every row and then threw the
// recorded ones away.
var instanceOwnersSelect = `
	WITH i AS MATERIALIZED (
		SELECT u.iid, u.wid, EXISTS (SELECT 1 FROM {schema}.workspaces r WHERE r.instance_id = u.iid) AS recorded
		FROM unnest($1::text[], $2::text[]) AS u(iid, wid))
	SELECT i.iid, false, '', '', true, false FROM i WHERE i.recorded
	UNION ALL
	SELECT i.iid, w.id IS NOT NULL, coalesce(w.status, ''), coalesce(w.instance_id, ''), false,
		EXISTS (SELECT 1 FROM {schema}.river_job j WHERE j.kind = ` + instanceTerminateKind + `
			AND j.args @> jsonb_build_object('instance_id', i.iid) AND j.state IN ` + liveJobStates + `)
	FROM i LEFT JOIN {schema}.workspaces w ON w.id = i.wid::uuid
	WHERE NOT i.recorded`

// InstanceOwners looks up one CP page in one query: for each listed
// (instance, workspace) pair, whether any row records the instance and,
// for one no row records, whether the workspace has a row and what it
// records, and whether a live instance_terminate already holds it. Keyed
// by instance id. The pairs are sent in instance id order, so the probes
// walk workspaces_instance_id_idx forward (the CP lists by launch time).
func (st *Store) InstanceOwners(ctx context.Context, db DB, instanceIDs, workspaceIDs []string) (map[string]InstanceOwner, error) {
	if len(instanceIDs) != len(workspaceIDs) {
		return nil, fmt.Errorf("store: look up listed instances: %d instance ids for %d workspace ids", len(instanceIDs), len(workspaceIDs))
	}
	iids, wids := sortedPairs(instanceIDs, workspaceIDs)
	rows, err := st.on(db).Query(ctx, instanceOwnersSelect, iids, wids)
	if err != nil {
		return nil, fmt.Errorf("store: look up listed instances: %w", err)
	}
	defer rows.Close()
	out := make(map[string]InstanceOwner, len(instanceIDs))
	for rows.Next() {
		var id string
		var o InstanceOwner
		if err := rows.Scan(&id, &o.WorkspaceExists, &o.Status, &o.RowInstanceID, &o.Recorded, &o.Condemned); err != nil {
			return nil, fmt.Errorf("store: scan listed instance: %w", err)
		}
		out[id] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: look up listed instances: %w", err)
	}
	return out, nil
}

// sortedPairs returns copies of the pairs ordered by instance id; the
// callers' slices are left as they were.
func sortedPairs(instanceIDs, workspaceIDs []string) ([]string, []string) {
	order := make([]int, len(instanceIDs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(instanceIDs[a], instanceIDs[b]) })
	iids, wids := make([]string, len(order)), make([]string, len(order))
	for k, i := range order {
		iids[k], wids[k] = instanceIDs[i], workspaceIDs[i]
	}
	return iids, wids
}

// WorkspacesWithLiveJobs returns which of workspaceIDs have a live job of
// kind, in one query (one GIN lookup per id: OFFSET 0 keeps the EXISTS a
// subplan per id, which Postgres otherwise turned into one scan of the
// whole table), keyed by canonical id.
func (st *Store) WorkspacesWithLiveJobs(ctx context.Context, db DB, kind string, workspaceIDs []string) (map[string]bool, error) {
	rows, err := st.on(db).Query(ctx, `
		SELECT w.id FROM unnest($2::text[]) AS w(id)
		WHERE EXISTS (SELECT 1 FROM {schema}.river_job j WHERE `+unindexed("j.kind")+` = $1
			AND j.args @> jsonb_build_object('workspace_id', w.id)
			AND `+unindexed("j.state")+` IN `+liveJobStates+` OFFSET 0)`, kind, canonicalIDs(workspaceIDs))
	if err != nil {
		return nil, fmt.Errorf("store: look up live jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan live job: %w", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: look up live jobs: %w", err)
	}
	return out, nil
}

// InstanceRecorded reports whether any row records instanceID: a listed
// instance tagged with one workspace but recorded on another must not be
// condemned by the first one's check alone.
func (st *Store) InstanceRecorded(ctx context.Context, db DB, instanceID string) (bool, error) {
	var ok bool
	err := st.on(db).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM {schema}.workspaces WHERE instance_id = $1)`, instanceID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: instance recorded: %w", err)
	}
	return ok, nil
}

func interval(d time.Duration) string {
	return fmt.Sprintf("%d milliseconds", d.Milliseconds())
}

// DeadInstanceTerminate is a discarded or cancelled instance_terminate
// whose instance may still run: no row records it, no live
// instance_terminate names it, and no orphan-terminated line says it is
// gone. RowExists says whether this database has its workspace's row.
type DeadInstanceTerminate struct {
	JobID       int64
	State       string
	WorkspaceID string
	InstanceID  string
	RowExists   bool
}

// deadInstanceTerminateSelect reads dead instance_terminate jobs, newest
// per instance. $1 is the "terminated" event name. Jobs with
// malformed ids (cancelled by the worker's own args check) are left out:
// re-running them could never succeed.
var deadInstanceTerminateSelect = `
	SELECT DISTINCT ON (j.args->>'instance_id') j.id, j.state::text, lower(j.args->>'workspace_id'), j.args->>'instance_id'
	FROM {schema}.river_job j
	WHERE j.kind = ` + instanceTerminateKind + ` AND j.state IN ` + deadJobStates + `
		AND j.args->>'instance_id' ~ '^i-[0-9a-f]{8,17}$'
		AND j.args->>'workspace_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
		AND NOT EXISTS (SELECT 1 FROM {schema}.river_job k WHERE k.kind = ` + instanceTerminateKind + `
			AND k.args @> jsonb_build_object('instance_id', j.args->>'instance_id') AND k.state IN ` + liveJobStates + `)
		AND NOT EXISTS (SELECT 1 FROM {schema}.workspaces w WHERE w.instance_id = j.args->>'instance_id')
		AND NOT EXISTS (SELECT 1 FROM {schema}.workspace_events e
			WHERE e.workspace_id = CASE WHEN j.args->>'workspace_id' ~* '^[0-9a-f-]{36}$' THEN (j.args->>'workspace_id')::uuid END
				AND e.event = $1 AND e.fields->>'instance_id' = j.args->>'instance_id')`

// deadInstanceTerminateRowExists is true when the job's workspace has a
// row here. Only such jobs are re-run: the worker's own hand-offs always
// have one, while a forced sweep's jobs for workspaces this database never
// had may be another deployment's instances, which an operator cancelled
// on purpose (re-running them undid that Cancel, past the breaker).
const deadInstanceTerminateRowExists = `EXISTS (SELECT 1 FROM {schema}.workspaces w
	WHERE w.id = CASE WHEN j.args->>'workspace_id' ~* '^[0-9a-f-]{36}$' THEN (j.args->>'workspace_id')::uuid END)`

// DeadInstanceTerminates reads one page of them after instance id after
// ("" for the first page), in instance id order (keyset paging).
func (st *Store) DeadInstanceTerminates(ctx context.Context, db DB, terminatedEvent, after string, limit int) ([]DeadInstanceTerminate, error) {
	rows, err := st.on(db).Query(ctx, `SELECT d.*, EXISTS (SELECT 1 FROM {schema}.workspaces w WHERE w.id = d.workspace_id::uuid)
		FROM (`+deadInstanceTerminateSelect+`
		AND j.args->>'instance_id' > $2
		ORDER BY j.args->>'instance_id', j.id DESC LIMIT $3) d(id, state, workspace_id, instance_id)
		ORDER BY d.instance_id`, terminatedEvent, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: read dead instance terminates: %w", err)
	}
	defer rows.Close()
	var out []DeadInstanceTerminate
	for rows.Next() {
		var d DeadInstanceTerminate
		if err := rows.Scan(&d.JobID, &d.State, &d.WorkspaceID, &d.InstanceID, &d.RowExists); err != nil {
			return nil, fmt.Errorf("store: scan dead instance terminate: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read dead instance terminates: %w", err)
	}
	return out, nil
}

// StillDeadInstanceTerminate re-reads job jobID under FOR UPDATE and
// reports whether it is still a dead instance_terminate to re-run (its
// workspace's row still exists).
func (st *Store) StillDeadInstanceTerminate(ctx context.Context, tx DB, terminatedEvent string, jobID int64) (bool, error) {
	var id int64
	err := st.on(tx).QueryRow(ctx, `SELECT r.id FROM (`+deadInstanceTerminateSelect+`
		AND j.id = $2 AND `+deadInstanceTerminateRowExists+`) d(id, state, workspace_id, instance_id)
		JOIN {schema}.river_job r ON r.id = d.id FOR UPDATE OF r`,
		terminatedEvent, jobID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: re-read dead instance terminate: %w", err)
	}
	return true, nil
}
