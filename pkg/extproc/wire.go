package extproc

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/igw-dev/igw/pkg/director"
)

// Wire names of the Endpoint Picker and body-based routing protocols
// (REFERENCE §2–§3). Envoy configurations, HTTPRoutes and other pickers
// spell them exactly so; header names are lower-case as HTTP/2 carries them.
const (
	// HeaderDestinationEndpoint carries the decision to Envoy: the primary
	// endpoint, then fallbacks, as a comma-separated list of ip:port.
	HeaderDestinationEndpoint = "x-gateway-destination-endpoint"
	// HeaderDestinationServed is the endpoint Envoy actually used; also the
	// key Envoy reports it under in response-phase metadata.
	HeaderDestinationServed = "x-gateway-destination-endpoint-served"
	// HeaderDestinationSubset is the key of the gateway's subset hint.
	HeaderDestinationSubset = "x-gateway-destination-endpoint-subset"
	// HeaderModelName and HeaderBaseModelName are set by the body-based
	// router so HTTPRoute header matches can choose the pool.
	HeaderModelName     = "x-gateway-model-name"
	HeaderBaseModelName = "x-gateway-base-model-name"
	// HeaderInferenceObjective selects an InferenceObjective (its priority).
	HeaderInferenceObjective = "x-gateway-inference-objective"
	// HeaderDroppedReason says why the picker refused a request.
	HeaderDroppedReason = director.DroppedReasonHeader

	// MetadataNamespaceLB is the dynamic-metadata namespace Envoy's load
	// balancer (ORIGINAL_DST with use_http_header, or a subset LB) reads
	// the destination from, and reports the served endpoint in.
	MetadataNamespaceLB = "envoy.lb"
	// MetadataNamespaceSubsetHint is the filter-metadata namespace of the
	// gateway's subset hint.
	MetadataNamespaceSubsetHint = "envoy.lb.subset_hint"

	// ServiceName is the gRPC service igw epp and igw bbr implement, also
	// reported by their health servers.
	ServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

	// MaxChunkBytes bounds each body chunk sent back to Envoy in
	// FULL_DUPLEX_STREAMED mode: Envoy recommends at most 64 KiB per
	// response message (pickers keep under 62,000 bytes). igw stays just
	// under 32 KiB so that each encoded message fits gRPC's 32 KiB pooled
	// send buffers: at 60 KiB every message took a 1 MiB buffer class and
	// missed its pool, allocating about 0.65× the body per 200 KB decision
	// (docs/performance.md).
	MaxChunkBytes = 32<<10 - 512
	// DefaultMaxBodyBytes bounds a request body the picker buffers (the
	// whole body is needed to read the model and prompt); larger bodies
	// get 413.
	DefaultMaxBodyBytes = 10 << 20
)

// BodyMode is how Envoy sends a body to an external processor
// (ext_proc ProcessingMode.BodySendMode); re-exported so callers of this
// package need not import Envoy's filter types.
type BodyMode = filterv3.ProcessingMode_BodySendMode

// The body modes igw's processors understand.
const (
	BodyModeNone             = filterv3.ProcessingMode_NONE
	BodyModeStreamed         = filterv3.ProcessingMode_STREAMED
	BodyModeBuffered         = filterv3.ProcessingMode_BUFFERED
	BodyModeBufferedPartial  = filterv3.ProcessingMode_BUFFERED_PARTIAL
	BodyModeFullDuplexStream = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
)

// ParseBodyMode reads a body mode as written in Envoy configuration or in
// igw's flags ("FULL_DUPLEX_STREAMED", "full-duplex-streamed", "BUFFERED",
// ...).
func ParseBodyMode(s string) (BodyMode, bool) {
	v, ok := filterv3.ProcessingMode_BodySendMode_value[strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	return BodyMode(v), ok
}

// header is one header to set.
type header struct{ key, value string }

// headerEdits are the header changes of one response to Envoy.
type headerEdits struct {
	set    []header
	remove []string
}

func (e *headerEdits) setHeader(k, v string) { e.set = append(e.set, header{k, v}) }

func (e *headerEdits) empty() bool { return e == nil || len(e.set) == 0 && len(e.remove) == 0 }

// mutation renders the edits; nil when there are none. Values go in
// raw_value, which Envoy prefers (value is the deprecated UTF-8 form), and
// every set overwrites what the client sent.
func (e *headerEdits) mutation() *extprocv3.HeaderMutation {
	if e.empty() {
		return nil
	}
	m := &extprocv3.HeaderMutation{RemoveHeaders: e.remove}
	for _, h := range e.set {
		m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.key, RawValue: []byte(h.value)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return m
}

// headerValue is a header's value as Envoy sends it: raw_value, or value
// from older Envoys.
func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// headerMap flattens Envoy's header list into lower-case name → first
// value.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	hs := hm.GetHeaders()
	out := make(map[string]string, len(hs))
	for _, h := range hs {
		k := strings.ToLower(h.GetKey())
		if _, dup := out[k]; !dup {
			out[k] = headerValue(h)
		}
	}
	return out
}

// rejection is an ImmediateResponse: the request ends at Envoy with this
// status, headers and body, and never reaches a model server.
type rejection struct {
	status  int
	headers []header
	body    []byte
	details string
}

func (r *rejection) response() *extprocv3.ProcessingResponse {
	edits := headerEdits{set: append([]header{{"content-type", "application/json"}}, r.headers...)}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.status)},
			Headers: edits.mutation(),
			Body:    r.body,
			Details: r.details,
		},
	}}
}

func headersResponse(request bool, c *extprocv3.CommonResponse, md *structpb.Struct) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: c}
	r := &extprocv3.ProcessingResponse{DynamicMetadata: md}
	if request {
		r.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}
	} else {
		r.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}
	}
	return r
}

func bodyResponse(request bool, c *extprocv3.CommonResponse, md *structpb.Struct) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: c}
	r := &extprocv3.ProcessingResponse{DynamicMetadata: md}
	if request {
		r.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}
	} else {
		r.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}
	}
	return r
}

// streamedBody is one FULL_DUPLEX_STREAMED body chunk.
func streamedBody(request bool, chunk []byte, eos bool) *extprocv3.ProcessingResponse {
	return bodyResponse(request, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: chunk, EndOfStream: eos}},
	}}, nil)
}

func trailersResponse(request bool) *extprocv3.ProcessingResponse {
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
}

// lbMetadata is the dynamic metadata carrying the decision:
// envoy.lb / x-gateway-destination-endpoint = dest.
func lbMetadata(dest string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		MetadataNamespaceLB: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			HeaderDestinationEndpoint: structpb.NewStringValue(dest),
		}}),
	}}
}

// subsetHint reads the gateway's subset hint: nil when absent (the whole
// pool), else the listed addresses (possibly none: no candidates). A hint
// given as a single comma-separated string is accepted too.
func subsetHint(md *corev3.Metadata) []string {
	ns, ok := md.GetFilterMetadata()[MetadataNamespaceSubsetHint]
	if !ok {
		return nil
	}
	v, ok := ns.GetFields()[HeaderDestinationSubset]
	if !ok {
		return nil
	}
	out := []string{}
	switch k := v.GetKind().(type) {
	case *structpb.Value_ListValue:
		for _, e := range k.ListValue.GetValues() {
			if s := strings.TrimSpace(e.GetStringValue()); s != "" {
				out = append(out, s)
			}
		}
	case *structpb.Value_StringValue:
		for _, s := range strings.Split(k.StringValue, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// servedEndpoint reads envoy.lb / x-gateway-destination-endpoint-served
// from response-phase metadata ("" when absent).
func servedEndpoint(md *corev3.Metadata) string {
	return strings.TrimSpace(md.GetFilterMetadata()[MetadataNamespaceLB].GetFields()[HeaderDestinationServed].GetStringValue())
}

func itoa(n int) string { return strconv.Itoa(n) }
