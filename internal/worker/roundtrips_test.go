package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// jobStatements records, per River work span (one attempt of one job),
// the statements the worker sent and the round trips they took: a pgx
// batch is one round trip however many statements it holds. Statements
// sent outside a work span (River's fetch, its producer, the inserts) are
// not the worker's and are left out.
type jobStatements struct {
	mu    sync.Mutex
	spans map[trace.SpanID]*attemptTrace
}

type attemptTrace struct {
	kind       string
	statements []string
	roundTrips int
}

func (j *jobStatements) attempt(ctx context.Context) *attemptTrace {
	span := trace.SpanFromContext(ctx)
	ro, ok := span.(sdktrace.ReadOnlySpan)
	if !ok {
		return nil
	}
	kind, ok := strings.CutPrefix(ro.Name(), "river.work/")
	if !ok {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.spans == nil {
		j.spans = map[trace.SpanID]*attemptTrace{}
	}
	a := j.spans[span.SpanContext().SpanID()]
	if a == nil {
		a = &attemptTrace{kind: kind}
		j.spans[span.SpanContext().SpanID()] = a
	}
	return a
}

var spaces = regexp.MustCompile(`\s+`)

// label is a statement's first 70 characters on one line.
func label(sql string) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(sql, " "))
	if len(s) > 70 {
		s = s[:70]
	}
	return s
}

func (j *jobStatements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if a := j.attempt(ctx); a != nil {
		j.mu.Lock()
		a.statements = append(a.statements, label(d.SQL))
		a.roundTrips++
		j.mu.Unlock()
	}
	return ctx
}

func (j *jobStatements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (j *jobStatements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if a := j.attempt(ctx); a != nil {
		j.mu.Lock()
		a.roundTrips++
		j.mu.Unlock()
	}
	return ctx
}

func (j *jobStatements) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if a := j.attempt(ctx); a != nil {
		j.mu.Lock()
		a.statements = append(a.statements, "(batched) "+label(d.SQL))
		j.mu.Unlock()
	}
}

func (j *jobStatements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// of returns the attempts of kind.
func (j *jobStatements) of(kind string) []attemptTrace {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []attemptTrace
	for _, a := range j.spans {
		if a.kind == kind {
			out = append(out, attemptTrace{kind: a.kind, statements: append([]string(nil), a.statements...), roundTrips: a.roundTrips})
		}
	}
	return out
}

// The round trips a provision and a terminate cost on their fast path
// (zero-latency CP, no retry, no hooks) are pinned: each one is a slice
// of the throughput budget against bare River (issue 15), and a helper
// that adds a read or splits a combined statement must show up here, not
// as a slower bench weeks later. The counts are River's and ours inside
// the job's work span: BEGIN, COMMIT and the job's completion included; River's fetch and its batched completer are not (bare River
// pays them alike).
func TestRoundTrips_PerJobArePinned(t *testing.T) {
	// COMPLETION_SYNCHRONOUS_COMMIT=off adds its SET LOCAL to BEGIN's
	// pipeline: one statement more, no round trip more.
	for _, sc := range []struct {
		setting string
		extra   int
	}{{jobs.SynchronousCommitOn, 0}, {jobs.SynchronousCommitOff, 1}} {
		t.Run("synchronous_commit="+sc.setting, func(t *testing.T) {
			inMemoryTracing(t)
			rec := &jobStatements{}
			e := jobtest.New(t, jobtest.Config{Tracer: rec, Settings: jobs.Settings{CompletionSynchronousCommit: sc.setting}})
			id := uuid.NewString()
			e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
			e.WaitStatus(id, store.StatusRunning)
			e.Terminate(id)
			e.WaitStatus(id, store.StatusStopped)

			// Provision: its start (read, env, provision.start) before the CP
			// call; then one pipelined batch (BEGIN, the row lock, then the checks,
			// the record and its event), and one more with the job's completion
			// and COMMIT. Terminate: its read before the CP call; then one batch
			// (BEGIN, the row lock, then the stop and its event), and the
			// completion with COMMIT. Before the batches they were 7 round trips
			// (7 statements) and 6 (6); with River's JobCompleteTx on its own,
			// 4 (6) each.
			for _, c := range []struct {
				kind                   string
				roundTrips, statements int
			}{
				{jobs.KindProvision, 3, 6 + sc.extra},
				{jobs.KindTerminate, 3, 6 + sc.extra},
			} {
				attempts := rec.of(c.kind)
				require.Len(t, attempts, 1, "%s: one attempt", c.kind)
				a := attempts[0]
				t.Logf("%s: %d round trips, %d statements:\n  %s", c.kind, a.roundTrips, len(a.statements), strings.Join(a.statements, "\n  "))
				require.Equal(t, c.roundTrips, a.roundTrips, "%s round trips per job", c.kind)
				require.Len(t, a.statements, c.statements, "%s statements per job", c.kind)
				require.Equal(t, sc.extra, occurrences(a.statements, "(batched) set local synchronous_commit = off"),
					"%s: SET LOCAL in the completing transaction only, right after its BEGIN", c.kind)
			}
		})
	}
}

func occurrences(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// The combined lock-then-record and lock-then-stop statements decide the
// same on a pgx transaction (pipelined, one round trip) and on a
// database/sql one (no pipelining: one statement after the other).
func TestRoundTrips_CombinedStatementsAgreeAcrossDrivers(t *testing.T) {
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	db, err := sql.Open("pgx", e.DBURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	st := store.MustFor("")
	onPgx := func(fn func(store.DB) error) error {
		return pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error { return fn(tx) })
	}
	onSQL := func(fn func(store.DB) error) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(store.SQL(tx)); err != nil {
			return errors.Join(err, tx.Rollback())
		}
		return tx.Commit()
	}
	for name, inTx := range map[string]func(func(store.DB) error) error{"pgx": onPgx, "database/sql": onSQL} {
		t.Run(name, func(t *testing.T) {
			id := uuid.NewString()
			e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
			ws := e.Workspace(id)
			stoppedBefore, inst := randomInstanceID(), randomInstanceID()
			ev := func(name string, fields map[string]any) store.Event {
				return store.Event{WorkspaceID: id, Event: name, Actor: "test", Fields: fields}
			}
			require.NoError(t, st.AppendEvent(ctx, e.Pool, ev(obs.EvProvisionStopped, map[string]any{"instance_id": stoppedBefore})))

			var rec store.Recording
			record := func(instanceID string) {
				require.NoError(t, inTx(func(tx store.DB) (err error) {
					rec, err = st.LockAndRecord(ctx, tx, id, ws.Generation, ws.Nonce, instanceID, obs.StopEvents,
						ev(obs.EvProvisionStarted, map[string]any{"instance_id": instanceID}))
					return err
				}))
			}
			record(stoppedBefore)
			require.True(t, rec.Stopped, "an instance the workspace stopped is refused")
			require.False(t, rec.Recorded)
			require.Equal(t, store.StatusProvisioning, rec.Workspace.Status)
			record(inst)
			require.True(t, rec.Recorded)
			require.False(t, rec.Stopped || rec.Condemned)
			require.Equal(t, store.StatusProvisioning, rec.Workspace.Status, "the row as it was before the record")
			require.Equal(t, inst, e.Workspace(id).InstanceID)
			record(randomInstanceID())
			require.False(t, rec.Recorded, "a recorded id is never overwritten")
			require.Equal(t, inst, rec.Workspace.InstanceID)

			var marked bool
			var cur store.Workspace
			finishStop := func(instanceID string) {
				require.NoError(t, inTx(func(tx store.DB) (err error) {
					cur, marked, err = st.LockAndFinishStop(ctx, tx, id, instanceID, ev(obs.EvProvisionStopped, map[string]any{"instance_id": instanceID}))
					return err
				}))
			}
			finishStop(inst)
			require.False(t, marked, "a running row is not stopped")
			require.NoError(t, st.MarkStopping(ctx, e.Pool, id, store.DesiredDeleted))
			finishStop(inst)
			require.True(t, marked)
			require.Equal(t, store.DesiredDeleted, cur.Desired)
			require.Equal(t, store.StatusRemoved, e.Workspace(id).Status)
			require.Empty(t, e.Workspace(id).InstanceID)

			evs, err := st.Events(ctx, e.Pool, id)
			require.NoError(t, err)
			var names []string
			for _, ev := range evs {
				names = append(names, ev.Event)
			}
			require.Equal(t, []string{obs.EvProvisionRequested, obs.EvProvisionStopped, obs.EvProvisionStarted, obs.EvProvisionStopped}, names,
				"an event only for the record and the stop that were made")
			require.Equal(t, store.DesiredDeleted, evs[3].Fields["desired"], "the stop event names the desired state")
		})
	}
}
