package cp

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the CP client's spans' instrumentation scope.
const tracerName = "github.com/molecule-ai/provision-worker/internal/cp"

// newTracer takes the global provider's tracer: a no-op until one is set
// (tracing not configured), forwarding to it once it is.
func newTracer() trace.Tracer { return otel.Tracer(tracerName) }

// do runs one CP call under a client span and sends the span's W3C
// traceparent with it, so the CP's logs join the job's trace. The span
// holds the route and the status code only: never a path (it carries ids
// the route already says), a header or a body.
func (c *Client) do(ctx context.Context, k call) (answer, error) {
	ctx, span := c.tracer.Start(ctx, "cp."+k.op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("cp.route", k.op)))
	defer span.End()
	a, err := c.send(ctx, k)
	status := a.status
	var e *Error
	if errors.As(err, &e) {
		status = e.StatusCode
	}
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	switch {
	case err != nil && status == 0:
		span.SetStatus(codes.Error, "no answer")
	case err != nil || status >= 400:
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	return a, err
}

// injectTraceParent writes the context's span as W3C traceparent (and
// tracestate); with no span in ctx it writes nothing.
func injectTraceParent(ctx context.Context, h http.Header) {
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}
