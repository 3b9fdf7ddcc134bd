package config

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
)

// API versions and kinds accepted in a standalone configuration file.
const (
	// IGWAPIVersion is the apiVersion of the kinds only igw has.
	IGWAPIVersion = "igw.dev/v1alpha1"

	// Kinds, as written in the kind field of a document.
	KindGateway     = "Gateway"
	KindModelServer = "ModelServer"
	KindRoute       = "Route"

	KindInferencePool         = "InferencePool"
	KindInferenceObjective    = "InferenceObjective"
	KindInferenceModelRewrite = "InferenceModelRewrite"
	KindEndpointPickerConfig  = "EndpointPickerConfig"

	// EndpointPickerConfigAPIVersion is the usual apiVersion of an
	// EndpointPickerConfig; EndpointPickerConfigAltAPIVersion is the one
	// llm-d deployments use. Both are accepted unchanged.
	EndpointPickerConfigAPIVersion    = "inference.networking.x-k8s.io/v1alpha1"
	EndpointPickerConfigAltAPIVersion = "llm-d.ai/v1alpha1"
)

// Defaults applied by Parse. They are constants, not variables, so that no
// caller can change another caller's defaults.
const (
	DefaultNamespace          = "default"
	DefaultAddress            = ":8080"
	DefaultAdminAddress       = ":9090"
	DefaultMaxRequestBodySize = 10 << 20 // 10 MiB
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultRequestTimeout     = 10 * time.Minute
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultRouteRetries       = 2
	DefaultBackendWeight      = 1
)

// Limits of Route fields.
const (
	MaxBackendWeight = 1_000_000
	MaxRouteRetries  = 10
)

const (
	// EngineTypeLabel is the pod label naming a model server's engine; a
	// ModelServer without spec.engine reads it too, as a pod would.
	EngineTypeLabel = "inference.networking.k8s.io/engine-type"
)

// Gateway (kind Gateway, igw.dev/v1alpha1) configures igw's own HTTP
// listeners: where the OpenAI-compatible API and the admin endpoints
// listen, how large a request body may be and how long a client may take.
// A file has at most one; without one, every field takes its default.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: Gateway
//	metadata:
//	  name: igw
//	spec:
//	  address: ":8080"            # the OpenAI-compatible API
//	  adminAddress: ":9090"       # /metrics, /healthz, /readyz
//	  maxRequestBodySize: 10Mi
//	  timeouts:
//	    readHeader: 10s
//	    request: 10m
//	    idle: 2m
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the listener configuration.
	Spec GatewaySpec `json:"spec,omitempty"`
}

// GatewaySpec is the listener configuration of a Gateway. After Parse every
// pointer is non-nil.
type GatewaySpec struct {
	// Address is the host:port the OpenAI-compatible API listens on
	// (default ":8080"). Port 0 picks a free port, which tests use.
	Address string `json:"address,omitempty"`

	// AdminAddress is the host:port serving /metrics, /healthz and /readyz
	// (default ":9090"). It is separate from Address so that scraping and
	// probes keep working when the API listener is saturated, and so that
	// they can be bound to a private interface.
	AdminAddress string `json:"adminAddress,omitempty"`

	// MaxRequestBodySize bounds a request body (default 10Mi); larger
	// requests get 413 before any of the body is parsed. A Kubernetes
	// quantity: 10485760, 10Mi and 10M are all accepted.
	MaxRequestBodySize *resource.Quantity `json:"maxRequestBodySize,omitempty"`

	// Timeouts bound how long clients may take.
	Timeouts GatewayTimeouts `json:"timeouts,omitempty"`
}

// MaxRequestBodyBytes is MaxRequestBodySize in bytes, or the default when
// it is unset.
func (s *GatewaySpec) MaxRequestBodyBytes() int64 {
	if s.MaxRequestBodySize == nil {
		return DefaultMaxRequestBodySize
	}
	return s.MaxRequestBodySize.Value()
}

// GatewayTimeouts are the listener's timeouts, as Go duration strings
// ("30s", "10m"). After Parse every field is non-nil.
type GatewayTimeouts struct {
	// ReadHeader bounds the time to read a request's headers (default 10s).
	// It must be positive: without it a slow client can hold a connection
	// open forever.
	ReadHeader *metav1.Duration `json:"readHeader,omitempty"`

	// Request bounds a whole request, from its first byte to the end of the
	// (possibly streamed) response (default 10m, long enough for a long
	// generation). "0s" means no limit. A Route's timeout overrides it.
	Request *metav1.Duration `json:"request,omitempty"`

	// Idle bounds how long a keep-alive connection may wait for its next
	// request (default 2m). It must be positive.
	Idle *metav1.Duration `json:"idle,omitempty"`
}

// ModelServer (kind ModelServer, igw.dev/v1alpha1) is a statically known
// model-server instance: it stands in for a pod when igw runs without
// Kubernetes. An InferencePool selects ModelServers exactly as it selects
// pods: by metadata.labels, in its own namespace, and each selected server
// contributes one endpoint (spec.address:port) per target port of the pool.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: ModelServer
//	metadata:
//	  name: llama-0
//	  namespace: default          # default "default"
//	  labels: {app: llama}
//	spec:
//	  address: 127.0.0.1          # IP or host name, no port
//	  ports: [{number: 8001}]     # optional: only these target ports
//	  engine: vllm                # vllm | sglang | trtllm-serve | triton-tensorrt-llm
type ModelServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says where the server is and what it runs.
	Spec ModelServerSpec `json:"spec,omitempty"`
}

// ModelServerSpec says where a model server is and what it runs.
type ModelServerSpec struct {
	// Address is the server's IP address or host name, without a port: the
	// port comes from the selecting pool's targetPorts, as a pod's does.
	Address string `json:"address"`

	// Ports, when set, are the only ports this server listens on: of a
	// selecting pool's targetPorts, only those listed here become
	// endpoints. Unset, every target port does (as for a pod). This lets
	// several servers share one address (e.g. 127.0.0.1) on different
	// ports and still be selected by one pool.
	Ports []v1.Port `json:"ports,omitempty"`

	// Engine is the model-server implementation, which decides the metric
	// names igw scrapes. Unset, the label
	// inference.networking.k8s.io/engine-type is used, and without that
	// label "vllm". After Parse it is always set.
	Engine Engine `json:"engine,omitempty"`
}

// Engine names a model-server implementation. The values are those of the
// pod label inference.networking.k8s.io/engine-type and of
// datastore.Engine, so a caller converts with datastore.Engine(e).
type Engine string

// Engines igw can scrape.
const (
	EngineVLLM        Engine = "vllm"
	EngineSGLang      Engine = "sglang"
	EngineTRTLLMServe Engine = "trtllm-serve"
	EngineTritonTRT   Engine = "triton-tensorrt-llm"
)

// Route (kind Route, igw.dev/v1alpha1) sends requests to weighted backends.
// A request matches a route when any of its matches does; among all
// matching routes the most specific match wins (see Config.SelectRoute).
// A backend is an InferencePool of the route's namespace, scheduled by the
// endpoint picker, or a plain URL (for example an OpenAI-compatible service
// that receives a canary share of the traffic).
//
//	apiVersion: igw.dev/v1alpha1
//	kind: Route
//	metadata:
//	  name: llama
//	spec:
//	  matches:
//	  - model: {value: llama-3.1-8b}          # type: Exact (default) | Prefix
//	    path: {type: PathPrefix, value: /v1}  # optional
//	    headers:                              # optional, all must match
//	    - {name: x-tenant, value: team-a}
//	  backends:
//	  - pool: llama                           # an InferencePool, same namespace
//	    weight: 95
//	  - url: http://10.0.0.9:8000             # a plain OpenAI-compatible URL
//	    weight: 5
//	  timeout: 5m                             # default: the Gateway's request timeout
//	  retries: 2                              # default 2
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the route's matches and backends.
	Spec RouteSpec `json:"spec,omitempty"`
}

// RouteSpec is the matches and backends of a Route. After Parse, Timeout
// and Retries are non-nil and every backend's Weight is set.
type RouteSpec struct {
	// Matches select the requests this route serves; any one is enough. No
	// matches make the route a catch-all.
	Matches []RouteMatch `json:"matches,omitempty"`

	// Backends receive the matched requests, each request going to one
	// backend chosen at random in proportion to the weights.
	Backends []RouteBackend `json:"backends"`

	// Timeout bounds a whole request on this route, overriding the
	// Gateway's timeouts.request; "0s" means no limit.
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retries is how many more attempts a request that failed before the
	// first response byte gets (on the picker's next fallback endpoint, or
	// again for a URL backend); default 2, at most 10. A failure after the
	// response started is never retried, because the client has seen part
	// of the answer.
	Retries *int32 `json:"retries,omitempty"`

	// Guard names a RequestGuard of the route's namespace whose limits
	// and rules every request of this route must pass before anything
	// else is done with it.
	Guard string `json:"guard,omitempty"`
}

// RouteMatch is one condition of a route; all of its parts must hold.
type RouteMatch struct {
	// Model matches the "model" field of the request body. Unset matches
	// any model, including requests without one.
	Model *ModelMatch `json:"model,omitempty"`

	// Path matches the request path. Unset matches any path.
	Path *PathMatch `json:"path,omitempty"`

	// Headers must all be present with these values.
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// ModelMatch compares the requested model name.
type ModelMatch struct {
	// Type is Exact (the default) or Prefix.
	Type ModelMatchType `json:"type,omitempty"`

	// Value is the model name, or its prefix.
	Value string `json:"value"`
}

// ModelMatchType is how a ModelMatch compares.
type ModelMatchType string

// Model match types.
const (
	ModelMatchExact  ModelMatchType = "Exact"
	ModelMatchPrefix ModelMatchType = "Prefix"
)

// PathMatch compares the request path.
type PathMatch struct {
	// Type is PathPrefix (the default) or Exact. PathPrefix matches whole
	// path segments, as in Gateway API: /v1 matches /v1 and /v1/models but
	// not /v10.
	Type PathMatchType `json:"type,omitempty"`

	// Value is the path or prefix; it starts with "/".
	Value string `json:"value"`
}

// PathMatchType is how a PathMatch compares.
type PathMatchType string

// Path match types.
const (
	PathMatchExact      PathMatchType = "Exact"
	PathMatchPathPrefix PathMatchType = "PathPrefix"
)

// HeaderMatch requires a request header value.
type HeaderMatch struct {
	// Type is Exact, the only type so far.
	Type HeaderMatchType `json:"type,omitempty"`

	// Name is the header name, compared case-insensitively.
	Name string `json:"name"`

	// Value must equal one of the header's values.
	Value string `json:"value"`
}

// HeaderMatchType is how a HeaderMatch compares.
type HeaderMatchType string

// HeaderMatchExact compares the header value byte for byte.
const HeaderMatchExact HeaderMatchType = "Exact"

// RouteBackend is one destination of a route: exactly one of Pool and URL.
type RouteBackend struct {
	// Pool is the name of an InferencePool in the route's namespace.
	Pool string `json:"pool,omitempty"`

	// URL is an http or https base URL; the request path is appended to
	// its path (http://h:8000/base + /v1/chat/completions →
	// http://h:8000/base/v1/chat/completions). No endpoint picker runs for
	// it.
	URL string `json:"url,omitempty"`

	// Weight is the backend's share of the route's traffic relative to the
	// other backends, 0..1000000 (default 1). 0 keeps a backend configured
	// but sends it nothing.
	Weight *int32 `json:"weight,omitempty"`
}
