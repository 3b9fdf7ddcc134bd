package director

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/igw-dev/igw/pkg/datastore"
)

// tracedFixture is newFixture with a tracer recording finished spans in
// memory, sampled as sampler says.
func tracedFixture(t *testing.T, sampler sdktrace.Sampler, addrs ...string) (*fixture, *tracetest.SpanRecorder) {
	t.Helper()
	f := newFixture(t, addrs...)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f.dir.tracer = tp.Tracer("test")
	for _, a := range addrs {
		f.set(a, datastore.Metrics{BaseModels: []string{"llama"}})
	}
	return f, rec
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestTrace_RetriedRequest: a request retried on a fallback has one
// upstream span per attempt, the first ended as an error; each attempt
// sends the model server a traceparent naming its own span; the request's
// span joins the client's trace and carries the GenAI attributes; and the
// scores recorded for the scheduling span never reach the client as an
// explanation it did not ask for.
func TestTrace_RetriedRequest(t *testing.T) {
	f, rec := tracedFixture(t, sdktrace.AlwaysSample(), "10.0.0.1:8000", "10.0.0.2:8000")
	ctx := context.Background()
	clientTP := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	x := exchange(t, f, "llama", http.Header{"Traceparent": {clientTP}})
	if x.ResponseHeader.Get(HeaderDecision) != "" {
		t.Fatal("tracing explained the decision to a client that did not ask")
	}
	eps := x.Endpoints()
	if len(eps) < 2 {
		t.Fatalf("endpoints %v, want a fallback", eps)
	}
	x.Try(ctx, eps[0])
	first := x.Header().Get("Traceparent")
	x.Retry(ctx, http.StatusServiceUnavailable, nil)
	x.Try(ctx, eps[1])
	second := x.Header().Get("Traceparent")
	x.ResponseHeaders(http.StatusOK, "application/json")
	x.ResponseBody([]byte(`{"model":"llama","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`), true)
	x.Finish(ctx, nil)

	spans := rec.Ended()
	var upstream []sdktrace.ReadOnlySpan
	var root sdktrace.ReadOnlySpan
	names := map[string]int{}
	for _, s := range spans {
		names[s.Name()]++
		switch s.Name() {
		case SpanUpstream:
			upstream = append(upstream, s)
		case SpanRequest:
			root = s
		}
	}
	if root == nil || len(upstream) != 2 || names[SpanParse] != 1 || names[SpanAdmission] != 1 || names[SpanSchedule] != 1 ||
		names[SpanFirstByte] != 2 || names[SpanCompletion] != 1 {
		t.Fatalf("spans %v", names)
	}
	if got := root.Parent().SpanID().String(); got != "b7ad6b7169203331" || root.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("request span's parent %s in trace %s: not the client's", got, root.SpanContext().TraceID())
	}
	if upstream[0].Status().Code != codes.Error || upstream[1].Status().Code == codes.Error {
		t.Errorf("attempt statuses %v, %v: want the first failed, the second not", upstream[0].Status(), upstream[1].Status())
	}
	for i, tp := range []string{first, second} {
		if !strings.Contains(tp, upstream[i].SpanContext().SpanID().String()) {
			t.Errorf("attempt %d sent traceparent %q, not naming its span %s", i+1, tp, upstream[i].SpanContext().SpanID())
		}
	}
	for k, want := range map[string]string{"gen_ai.request.model": "llama", "gen_ai.response.model": "llama", "gen_ai.operation.name": "chat",
		"gen_ai.usage.input_tokens": "7", "gen_ai.usage.output_tokens": "3", "server.address": strings.TrimSuffix(eps[1], ":8000"), "igw.retries": "1"} {
		if v, ok := spanAttr(root, k); !ok || v.String() != want {
			t.Errorf("%s = %q, want %q", k, v.String(), want)
		}
	}
}

// TestTrace_SamplerOffAndRefusals: a request the sampler drops records
// nothing and forwards the client's traceparent untouched; a refused
// request's span ends with its status and reason.
func TestTrace_SamplerOffAndRefusals(t *testing.T) {
	f, rec := tracedFixture(t, sdktrace.NeverSample(), "10.0.0.1:8000")
	clientTP := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	x := exchange(t, f, "llama", http.Header{"Traceparent": {clientTP}})
	x.Try(context.Background(), x.Endpoints()[0])
	if got := x.Header().Get("Traceparent"); got != clientTP {
		t.Errorf("traceparent %q forwarded, want the client's %q", got, clientTP)
	}
	x.Fail(context.Background(), errors.New("connection refused"))
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded by a sampler that samples nothing", n)
	}

	f, rec = tracedFixture(t, sdktrace.AlwaysSample(), "10.0.0.1:8000")
	_, reply := f.dir.Begin(context.Background(), &Inbound{Method: http.MethodPost, Path: "/v1/chat/completions",
		Body: []byte(`{"model":`), Pool: testPool, Header: http.Header{}})
	if reply == nil || reply.Status != http.StatusBadRequest {
		t.Fatalf("malformed body: %+v", reply)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != SpanRequest {
		t.Fatalf("spans of a refused request: %d", len(spans))
	}
	if v, _ := spanAttr(spans[0], "http.response.status_code"); v.AsInt64() != http.StatusBadRequest {
		t.Errorf("status %v, want 400", v.String())
	}
}
