package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of igw's spans.
const TracerName = "github.com/igw-dev/igw"

// Tracing is OpenTelemetry tracing as the standard OTEL_* environment
// variables configure it, so igw is set up like any other OpenTelemetry
// service: OTLP over gRPC or HTTP, the sampler, the service name and
// resource attributes.
type Tracing struct {
	// Tracer is what the Director traces with.
	Tracer   trace.Tracer
	provider *sdktrace.TracerProvider
}

// TracingEnabled reports whether tracing is on: asked for with a flag, or
// configured by OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT — and not switched off by
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Off by default:
// without a collector to send to, spans are work for nothing.
func TracingEnabled(flag bool, getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return flag || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracing builds the tracer provider: OTLP exporter over the protocol
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL names
// (grpc or http/protobuf, the default), batched; the sampler of
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default: parent-based,
// always on); the resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, with service name defaultService when unset.
// The exporters read their endpoint, headers, timeout and TLS variables
// themselves.
func NewTracing(ctx context.Context, defaultService string, getenv func(string) string) (*Tracing, error) {
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: igw exports traces over grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	attrs := []attribute.KeyValue{}
	if getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		attrs = append(attrs, attribute.String("service.name", defaultService))
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: the resource: %w", err)
	}
	// No sampler option: the SDK takes OTEL_TRACES_SAMPLER itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Tracer: tp.Tracer(TracerName), provider: tp}, nil
}

// Shutdown sends the spans still batched and stops the exporter, within
// ctx's deadline.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutting down: %w", err)
	}
	return nil
}
