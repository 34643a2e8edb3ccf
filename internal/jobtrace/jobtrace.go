// Package jobtrace carries a request's OpenTelemetry trace into the
// River jobs it inserts and names the ids on each attempt's span. It is
// shared by the insert clients (package jobs) and the worker
// (internal/worker), so both sides agree on the middleware order.
package jobtrace

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Middleware is the River middleware every client built here carries, insert
// and worker alike. It uses the global OpenTelemetry tracer provider: with
// none set (tracing not configured) its spans are no-ops and no job
// metadata is written. A host that set its own provider gets its handler's
// trace carried into the job without configuring anything here.
//
// Order matters: traceParent must run before otelriver's work span starts,
// jobSpanIDs inside it, where the work span is the context's span.
func Middleware() []rivertype.Middleware {
	return []rivertype.Middleware{
		&traceParent{},
		otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
			EnableTracePropagation:      true,
			EnableWorkSpanJobKindSuffix: true,
		}),
		&jobSpanIDs{},
	}
}

// traceParent makes the job's work span a child of the span that inserted
// it. otelriver only links the two (a job may run days later), which puts
// the handler and the CP call it caused in different traces; a provision
// normally runs within seconds of its request, and an operator following
// one request wants one trace.
type traceParent struct{ river.MiddlewareDefaults }

func (*traceParent) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var meta map[string]any
	if len(job.Metadata) == 0 || json.Unmarshal(job.Metadata, &meta) != nil {
		return doInner(ctx)
	}
	carrier := propagation.MapCarrier{}
	for _, k := range (propagation.TraceContext{}).Fields() {
		if s, ok := meta[k].(string); ok {
			carrier[k] = s
		}
	}
	return doInner(propagation.TraceContext{}.Extract(ctx, carrier))
}

// jobSpanIDs adds the ids the job's args carry and the attempt's outcome
// to the work span: ids only (invariant "ids-only args",
// docs/design.md), never args' other fields.
type jobSpanIDs struct{ river.MiddlewareDefaults }

func (*jobSpanIDs) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return doInner(ctx)
	}
	var a struct {
		WorkspaceID string `json:"workspace_id"`
		InstanceID  string `json:"instance_id"`
	}
	_ = json.Unmarshal(job.EncodedArgs, &a)
	span.SetAttributes(attribute.String("workspace_id", a.WorkspaceID))
	if a.InstanceID != "" {
		span.SetAttributes(attribute.String("instance_id", a.InstanceID))
	}
	err := doInner(ctx)
	span.SetAttributes(attribute.String("outcome", attemptOutcome(job, err)))
	return err
}

// attemptOutcome names what the attempt's result makes of the job, in the
// words of the jobs_total metric.
func attemptOutcome(job *rivertype.JobRow, err error) string {
	var snooze *river.JobSnoozeError
	var cancel *river.JobCancelError
	switch {
	case err == nil:
		return "completed"
	case errors.As(err, &snooze):
		return "snoozed"
	case errors.As(err, &cancel):
		return "cancelled"
	case job.Attempt >= job.MaxAttempts:
		return "discarded"
	}
	return "retried"
}

// SpanInstance records the instance id a provision learned on the job's
// span (a no-op when the context holds no recording span).
func SpanInstance(ctx context.Context, instanceID string) {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("instance_id", instanceID))
}
