package store

import (
	"context"
	"fmt"
)

// JobRef is the part of a River job row the state machine decides on.
type JobRef struct {
	ID      int64
	Kind    string
	State   string
	Attempt int
	// Attempted: a worker has fetched the job at least once. Attempt alone
	// cannot say: River gives the attempt back to a job that snoozed or
	// was interrupted by shutdown, so a first attempt that may have
	// launched an instance sits at attempt 0 again.
	Attempted bool
}

// LiveJobs lists a workspace's jobs of kind that may still run. It matches
// args with @> so River's GIN index on args serves it; every job is
// inserted with the canonical id (CanonicalID), which is what it matches.
func (st *Store) LiveJobs(ctx context.Context, db DB, kind, workspaceID string) ([]JobRef, error) {
	return st.queryJobs(ctx, db, `
		SELECT id, kind, state::text, attempt, attempted_at IS NOT NULL FROM {schema}.river_job
		WHERE `+unindexed("kind")+` = $1 AND args @> jsonb_build_object('workspace_id', $2::text)
			AND `+unindexed("state")+` IN `+liveJobStates+` ORDER BY id`, kind, CanonicalID(workspaceID))
}

// LockLiveJobs is LiveJobs under FOR UPDATE: River fetches with SKIP
// LOCKED, so until the caller's transaction ends no worker starts them.
func (st *Store) LockLiveJobs(ctx context.Context, tx DB, kind, workspaceID string) ([]JobRef, error) {
	return st.queryJobs(ctx, tx, `
		SELECT id, kind, state::text, attempt, attempted_at IS NOT NULL FROM {schema}.river_job
		WHERE `+unindexed("kind")+` = $1 AND args @> jsonb_build_object('workspace_id', $2::text)
			AND `+unindexed("state")+` IN `+liveJobStates+` ORDER BY id FOR UPDATE`, kind, CanonicalID(workspaceID))
}

// LiveInstanceTerminates lists live instance_terminate jobs for one
// instance: an instance condemned as an orphan must not be adopted or
// recorded by a provision, whichever commits first.
func (st *Store) LiveInstanceTerminates(ctx context.Context, db DB, instanceID string) ([]JobRef, error) {
	return st.queryJobs(ctx, db, `
		SELECT id, kind, state::text, attempt, attempted_at IS NOT NULL FROM {schema}.river_job
		WHERE kind = `+instanceTerminateKind+` AND args @> jsonb_build_object('instance_id', $1::text)
			AND state IN `+liveJobStates+` ORDER BY id`, instanceID)
}

// JobsForWorkspace lists every job of a workspace, any state (timeline).
func (st *Store) JobsForWorkspace(ctx context.Context, db DB, workspaceID string) ([]JobRef, error) {
	return st.queryJobs(ctx, db, `
		SELECT id, kind, state::text, attempt, attempted_at IS NOT NULL FROM {schema}.river_job
		WHERE args @> jsonb_build_object('workspace_id', $1::text) ORDER BY id`, CanonicalID(workspaceID))
}

func (st *Store) queryJobs(ctx context.Context, db DB, sql string, args ...any) ([]JobRef, error) {
	rows, err := st.on(db).Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query jobs: %w", err)
	}
	defer rows.Close()
	var out []JobRef
	for rows.Next() {
		var j JobRef
		if err := rows.Scan(&j.ID, &j.Kind, &j.State, &j.Attempt, &j.Attempted); err != nil {
			return nil, fmt.Errorf("store: scan job: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query jobs: %w", err)
	}
	return out, nil
}
