package obs

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultServiceName is the traces' service.name unless OTEL_SERVICE_NAME
// says otherwise.
const DefaultServiceName = "provision-worker"

// Setup turns tracing on when the standard OpenTelemetry environment asks
// for it: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT
// set (OTLP over HTTP), and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none. Otherwise it does nothing at all: no global
// provider is set, so every span in the process stays a no-op.
//
// When on, it sets the global tracer provider (which River's middleware
// and the CP client use) and the W3C propagators. The returned shutdown
// flushes the spans still batched; call it once, on the way out. The
// exporter reads its other settings (headers, TLS, timeout, compression)
// from the process's OTEL_EXPORTER_OTLP_* variables itself.
func Setup(ctx context.Context, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	endpoint := tracesEndpoint(getenv)
	if endpoint == "" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") ||
		strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return noop, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		// The exporter's errors name the variable's problem, not a header value.
		return noop, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = DefaultServiceName
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", name))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

// tracesEndpoint is the OTLP/HTTP traces URL the environment names: the
// signal-specific variable as is, else the base one with /v1/traces (the
// OTLP spec's rule); "" when neither is set.
func tracesEndpoint(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); v != "" {
		return v
	}
	if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		return strings.TrimRight(v, "/") + "/v1/traces"
	}
	return ""
}
