package cp

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Each CP call is a client span holding the route and status code only,
// and the request carries that span as W3C traceparent; a call made with
// no span (tracing off) sends none.
func TestTracing_ClientSpanAndTraceparent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		answer   reply
		call     func(context.Context, *Client) error
		route    string
		status   int64
		errorSet bool
	}{
		{"provision created", reply{status: 201, body: `{"instance_id":"` + testInst + `","state":"pending"}`},
			func(ctx context.Context, c *Client) error { _, err := c.Start(ctx, provisionReq()); return err },
			opProvision, 201, false},
		{"provision rejected", reply{status: 400, body: `{"error":"bad V"}`},
			func(ctx context.Context, c *Client) error { _, err := c.Start(ctx, provisionReq()); return err },
			opProvision, 400, true},
		{"status unavailable", reply{status: 503, body: `{"error":"down"}`},
			func(ctx context.Context, c *Client) error { _, err := c.Status(ctx, testWS, testInst); return err },
			opStatus, 503, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = append(got, r.Header.Get("Traceparent"))
				mu.Unlock()
				tt.answer.serve(w)
			})
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			c.tracer = tp.Tracer(tracerName)

			_ = tt.call(context.Background(), c)
			spans := exp.GetSpans()
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, "cp."+tt.route, s.Name)
			attrs := map[string]any{}
			for _, a := range s.Attributes {
				attrs[string(a.Key)] = a.Value.AsInterface()
			}
			require.Equal(t, map[string]any{"cp.route": tt.route, "http.response.status_code": tt.status}, attrs)
			require.Equal(t, tt.errorSet, s.Status.Code == codes.Error)
			require.NotContains(t, s.Status.Description, "V", "no CP body or env value in the status")
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, []string{"00-" + s.SpanContext.TraceID().String() + "-" + s.SpanContext.SpanID().String() + "-01"}, got)
		})
	}
}

func TestTracing_NoSpanNoTraceparent(t *testing.T) {
	t.Parallel()
	var got []string
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, strings.Join(r.Header.Values("Traceparent"), ","))
		reply{status: 200, body: `{"state":"running"}`}.serve(w)
	})
	_, err := c.Status(context.Background(), testWS, testInst)
	require.NoError(t, err)
	require.Equal(t, []string{""}, got)
}
