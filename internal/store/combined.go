package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The statements in this file each do what would otherwise take two to
// four round trips. With them, and the job's completion riding with
// COMMIT (complete.go), a provision and a terminate take three round trips
// each (TestRoundTrips_PerJobArePinned), where the plain sequence took
// seven and six.

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

// batcher is a DB that can pipeline statements (pgx.Tx, pgx.Conn, a
// pool). database/sql has no pipelining: there the statements run one
// after the other, with the same results.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// lockRowSQL takes a workspace's row lock (see Lock) and reads nothing.
const lockRowSQL = `SELECT 1 FROM {schema}.workspaces WHERE id = $1 FOR UPDATE`

// lockThen takes id's row lock, then runs query (one row, read by
// scan). On a pgx transaction both go in one round trip. They stay two
// statements on purpose: under READ COMMITTED each statement of a
// pipeline takes its own snapshot when it starts, so query sees whatever
// the lock's previous holder committed, as a read after a separate Lock
// did. One statement doing both would read with the snapshot taken before
// it waited for the lock, and miss a stop event or an instance_terminate
// committed under that lock meanwhile.
func (st *Store) lockThen(ctx context.Context, tx DB, id, query string, args []any, scan func(pgx.Row) error) error {
	b, ok := tx.(batcher)
	if !ok {
		if _, err := st.on(tx).Exec(ctx, lockRowSQL, id); err != nil {
			return err
		}
		return scan(st.on(tx).QueryRow(ctx, query, args...))
	}
	batch := &pgx.Batch{}
	batch.Queue(st.q(lockRowSQL), id)
	batch.Queue(st.q(query), args...)
	res := b.SendBatch(ctx, batch)
	_, err := res.Exec()
	if err == nil {
		err = scan(res.QueryRow())
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	return err
}

// Recording is what LockAndRecord found and did under the row lock.
type Recording struct {
	// Workspace is the locked row as it was before the record.
	Workspace Workspace
	// Condemned: a live instance_terminate names the instance.
	Condemned bool
	// Stopped: the workspace already stopped the instance (one of the stop
	// events names it, as StoppedInstances reads them), or an
	// instance_terminate in any state names it. A CP honouring a repeated
	// Idempotency-Key replays the instance it launched for that key even
	// after we terminated it: an operator's Retry of a discarded provision
	// recorded such a dead instance, leaving the row running on it.
	Stopped bool
	// Recorded: the row now holds the instance and ev was appended.
	Recorded bool
}

// recordSQL is the condemned check (a live instance_terminate names the
// instance), the stopped-before check and recordInstanceSQL with its event
// in one statement, run under the row lock (lockThen). The row is recorded only when it still waits for this
// generation and nonce with no instance, and the instance is neither
// condemned nor stopped before; ev is appended only for a recorded row.
var recordSQL = `
	WITH chk AS (
		SELECT EXISTS (SELECT 1 FROM {schema}.river_job WHERE kind = ` + instanceTerminateKind + `
				AND args @> jsonb_build_object('instance_id', $3::text) AND state IN ` + liveJobStates + `) AS condemned,
			EXISTS (SELECT 1 FROM {schema}.river_job WHERE kind = ` + instanceTerminateKind + `
				AND args @> jsonb_build_object('instance_id', $3::text))
			OR EXISTS (SELECT 1 FROM {schema}.workspace_events e
				WHERE e.workspace_id = $1 AND e.event = ANY($5) AND (e.fields->>'instance_id' = $3
					OR (jsonb_typeof(e.fields->'listed_instance_ids') = 'array' AND e.fields->'listed_instance_ids' ? $3))) AS stopped
	), upd AS (
		UPDATE {schema}.workspaces w SET instance_id = $3, status = 'running', last_error = NULL,
			updated_at = now(), status_changed_at = now()
		FROM chk
		WHERE w.id = $1 AND w.generation = $2 AND w.provision_nonce = $4 AND w.status = 'provisioning'
			AND w.instance_id IS NULL AND NOT chk.condemned AND NOT chk.stopped
		RETURNING w.id
	), ev AS (
		INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
		SELECT id, $6, $7, $8, $9, $10 FROM upd
	)
	SELECT ` + workspaceColumns + `, chk.condemned, chk.stopped, EXISTS (SELECT 1 FROM upd)
	FROM {schema}.workspaces, chk WHERE id = $1`

// LockAndRecord locks a row and, in the same round trip on pgx, decides
// and makes a provision's record: the lock with the condemned check, the
// stopped-before check and the record with its event took three. The
// caller decides the rest (a hand-off, a refusal) from the Recording.
// ErrNotFound: no row (nothing recorded).
func (st *Store) LockAndRecord(ctx context.Context, tx DB, id string, gen int64, nonce, instanceID string, stopEvents []string, ev Event) (Recording, error) {
	fields, err := encodeFields(ev.Fields)
	if err != nil {
		return Recording{}, err
	}
	jobID, attempt := jobRef(ev)
	var r Recording
	err = st.lockThen(ctx, tx, id, recordSQL,
		[]any{id, gen, instanceID, nonce, stopEvents, ev.Event, jobID, attempt, ev.Actor, fields},
		func(row pgx.Row) (err error) {
			r.Workspace, err = scanWorkspace(row, &r.Condemned, &r.Stopped, &r.Recorded)
			return err
		})
	if errors.Is(err, ErrNotFound) {
		return Recording{}, ErrNotFound
	}
	if err != nil {
		return Recording{}, fmt.Errorf("store: lock and record: %w", err)
	}
	return r, nil
}

// finishStopSQL finishes a stop under the row lock (lockThen): a
// stopping row whose instance is confirmed gone becomes stopped (or
// removed when it was deleted) with no instance. $2 is the id the
// terminate confirmed gone ("" when none was recorded); the statement is
// conditional on it so a row that changed under the job is left alone.
// The event is appended whenever the row is still stopping with that
// instance, its fields given the row's desired state; the row is marked
// stopped/removed only when it is not to run again (a restart starts the
// next generation instead, in the caller).
const finishStopSQL = `
	WITH cur AS (
		SELECT id, desired_state FROM {schema}.workspaces
		WHERE id = $1 AND status = 'stopping' AND coalesce(instance_id, '') = $2
	), upd AS (
		UPDATE {schema}.workspaces w SET
			status = CASE WHEN w.desired_state = 'deleted' THEN 'removed' ELSE 'stopped' END,
			instance_id = NULL, last_error = NULL, updated_at = now(), status_changed_at = now()
		FROM cur WHERE w.id = cur.id AND cur.desired_state <> 'running'
		RETURNING w.id
	), ev AS (
		INSERT INTO {schema}.workspace_events (workspace_id, event, job_id, attempt, actor, fields)
		SELECT id, $3, $4, $5, $6, $7::jsonb || jsonb_build_object('desired', desired_state) FROM cur
	)
	SELECT ` + workspaceColumns + `, EXISTS (SELECT 1 FROM upd)
	FROM {schema}.workspaces WHERE id = $1`

// LockAndFinishStop locks a row and, in the same round trip on pgx,
// finishes a confirmed stop of instanceID ("" when none was recorded):
// the lock and the stop with its event took two. It returns the row as it
// was before, and whether it was marked stopped (or removed). ev is
// appended, with the row's desired state added to its fields, whenever
// the row is still stopping with that instance; the caller starts the
// next generation when it is to run again. ErrNotFound: no row.
func (st *Store) LockAndFinishStop(ctx context.Context, tx DB, id, instanceID string, ev Event) (Workspace, bool, error) {
	fields, err := encodeFields(ev.Fields)
	if err != nil {
		return Workspace{}, false, err
	}
	jobID, attempt := jobRef(ev)
	var ws Workspace
	var marked bool
	err = st.lockThen(ctx, tx, id, finishStopSQL, []any{id, instanceID, ev.Event, jobID, attempt, ev.Actor, fields},
		func(row pgx.Row) (err error) {
			ws, err = scanWorkspace(row, &marked)
			return err
		})
	if errors.Is(err, ErrNotFound) {
		return Workspace{}, false, ErrNotFound
	}
	if err != nil {
		return Workspace{}, false, fmt.Errorf("store: lock and finish stop: %w", err)
	}
	return ws, marked, nil
}
