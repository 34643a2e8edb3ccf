package worker_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// inMemoryTracing makes the global tracer provider (the one River's
// middleware and the CP client use, as obs.Setup would) record into an
// in-memory exporter for the test's length.
func inMemoryTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		_ = tp.Shutdown(context.Background())
	})
	return tp, exp
}

// A handler's span travels with its request into the job, and the job's
// span covers the CP call, which carries the same trace in traceparent:
// one trace from the handler to the CP. No span holds an env value.
func TestTracing_OneTraceFromHandlerToCP(t *testing.T) {
	tp, exp := inMemoryTracing(t)
	e := jobtest.New(t, jobtest.Config{})
	const secret = "tok-SECRET-e4c1d2"
	id := uuid.NewString()

	ctx, handler := tp.Tracer("handler").Start(context.Background(), "handler POST /workspaces")
	err := pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
		_, err := jobs.RequestProvision(ctx, tx, e.Insert, jobs.ProvisionRequest{
			WorkspaceID: id, Runtime: "python", Env: map[string]string{"API_TOKEN": secret}})
		return err
	})
	handler.End()
	require.NoError(t, err)
	e.WaitStatus(id, store.StatusRunning)
	workSpan := "river.work/" + jobs.KindProvision
	e.WaitFor("the work span to end", func() bool { return spanNamed(exp.GetSpans(), workSpan) != nil })

	spans := exp.GetSpans()
	t.Log("span tree:\n" + spanTree(spans))
	traceID := handler.SpanContext().TraceID()
	insert := requireChild(t, spans, handler.SpanContext().SpanID(), "river.insert_many")
	work := requireChild(t, spans, insert.SpanContext.SpanID(), workSpan)
	call := requireChild(t, spans, work.SpanContext.SpanID(), "cp.provision")
	for _, s := range spans {
		require.Equal(t, traceID, s.SpanContext.TraceID(), "span %s is in another trace", s.Name)
	}
	requireAttr(t, work, "workspace_id", id)
	requireAttr(t, work, "instance_id", e.Workspace(id).InstanceID)
	requireAttr(t, work, "outcome", "completed")
	requireAttr(t, call, "http.response.status_code", "201")

	reqs := requestsOf(e.CP, cpfake.RouteProvision)
	require.Len(t, reqs, 1)
	want := fmt.Sprintf("00-%s-%s-01", traceID, call.SpanContext.SpanID())
	require.Equal(t, want, reqs[0].TraceParent, "the CP saw the CP span's traceparent")

	require.Contains(t, spanText(work), id, "the scan below sees attribute values")
	for _, s := range spans {
		require.NotContains(t, spanText(s), secret, "span %s holds an env value", s.Name)
		require.NotContains(t, spanText(s), jobtest.SharedSecret, "span %s holds a credential", s.Name)
	}
}

// Without a provider set (tracing not configured), nothing is written to
// the job and the CP request carries no traceparent.
func TestTracing_OffWritesNothing(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python"})
	e.WaitStatus(id, store.StatusRunning)
	require.NotContains(t, string(res.Job.Metadata), "traceparent")
	reqs := requestsOf(e.CP, cpfake.RouteProvision)
	require.Len(t, reqs, 1)
	require.Empty(t, reqs[0].TraceParent)
}

func spanNamed(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

func requireChild(t *testing.T, spans tracetest.SpanStubs, parent trace.SpanID, name string) tracetest.SpanStub {
	t.Helper()
	s := spanNamed(spans, name)
	require.NotNil(t, s, "no span %s", name)
	require.Equal(t, parent, s.Parent.SpanID(), "span %s has the wrong parent", name)
	return *s
}

func requireAttr(t *testing.T, s tracetest.SpanStub, key, want string) {
	t.Helper()
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			require.Equal(t, want, a.Value.String(), "span %s attribute %s", s.Name, key)
			return
		}
	}
	t.Fatalf("span %s has no attribute %s", s.Name, key)
}

// spanText is everything a span would export that a value could hide in.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	fmt.Fprintln(&b, s.Name, s.Status.Description)
	for _, a := range s.Attributes {
		fmt.Fprintln(&b, a.Key, a.Value.String())
	}
	for _, ev := range s.Events {
		fmt.Fprintln(&b, ev.Name)
		for _, a := range ev.Attributes {
			fmt.Fprintln(&b, a.Key, a.Value.String())
		}
	}
	for _, l := range s.Links {
		for _, a := range l.Attributes {
			fmt.Fprintln(&b, a.Key, a.Value.String())
		}
	}
	return b.String()
}

// spanTree renders spans as an indented tree with their attributes.
func spanTree(spans tracetest.SpanStubs) string {
	children := map[trace.SpanID][]tracetest.SpanStub{}
	for _, s := range spans {
		children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
	}
	var b strings.Builder
	var walk func(parent trace.SpanID, depth int)
	walk = func(parent trace.SpanID, depth int) {
		for _, s := range children[parent] {
			var attrs []string
			for _, a := range s.Attributes {
				attrs = append(attrs, fmt.Sprintf("%s=%s", a.Key, a.Value.String()))
			}
			sort.Strings(attrs)
			fmt.Fprintf(&b, "%s%s [%s] trace=%s span=%s {%s}\n", strings.Repeat("  ", depth), s.Name,
				s.SpanKind, s.SpanContext.TraceID(), s.SpanContext.SpanID(), strings.Join(attrs, " "))
			walk(s.SpanContext.SpanID(), depth+1)
		}
	}
	walk(trace.SpanID{}, 0)
	return b.String()
}
