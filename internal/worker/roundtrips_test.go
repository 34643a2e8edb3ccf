package worker_test

import (
	"context"
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
// the job's work span: BEGIN, COMMIT and JobCompleteTx's own statement
// included; River's fetch and its batched completer are not (bare River
// pays them alike).
func TestRoundTrips_PerJobArePinned(t *testing.T) {
	inMemoryTracing(t)
	rec := &jobStatements{}
	e := jobtest.New(t, jobtest.Config{Tracer: rec})
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
	e.WaitStatus(id, store.StatusRunning)
	e.Terminate(id)
	e.WaitStatus(id, store.StatusStopped)

	for _, c := range []struct {
		kind       string
		roundTrips int
	}{
		{jobs.KindProvision, 7},
		{jobs.KindTerminate, 6},
	} {
		attempts := rec.of(c.kind)
		require.Len(t, attempts, 1, "%s: one attempt", c.kind)
		a := attempts[0]
		t.Logf("%s: %d round trips, %d statements:\n  %s", c.kind, a.roundTrips, len(a.statements), strings.Join(a.statements, "\n  "))
		require.Equal(t, c.roundTrips, a.roundTrips, "%s round trips per job", c.kind)
	}
}
