package telemetry

import (
	"context"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestTracingEnabled: off unless asked for by the flag or an OTLP
// endpoint, and the standard switches turn it off whatever else is set.
func TestTracingEnabled(t *testing.T) {
	for _, c := range []struct {
		flag bool
		env  map[string]string
		want bool
	}{
		{false, nil, false},
		{true, nil, true},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{true, map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{false, map[string]string{"OTEL_SERVICE_NAME": "igw"}, false},
	} {
		if got := TracingEnabled(c.flag, envOf(c.env)); got != c.want {
			t.Errorf("flag %v env %v: %v, want %v", c.flag, c.env, got, c.want)
		}
	}
}

// TestNewTracing_Protocols: grpc and http/protobuf build an exporter (no
// connection is made until spans are sent); anything else is refused with
// the variable named.
func TestNewTracing_Protocols(t *testing.T) {
	for _, p := range []string{"", "grpc", "http/protobuf"} {
		tr, err := NewTracing(context.Background(), "igw", envOf(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": p}))
		if err != nil {
			t.Fatalf("protocol %q: %v", p, err)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown with nothing to send: %v", err)
		}
	}
	_, err := NewTracing(context.Background(), "igw", envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}))
	if err == nil || !strings.Contains(err.Error(), "http/json") {
		t.Errorf("http/json: %v, want refused", err)
	}
}
