package engine

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/policy/guard"
)

// KindRoute is the kind of a Route document.
const KindRoute = "Route"

// Defaults and limits of Route fields.
const (
	DefaultRouteRetries  = 2
	DefaultBackendWeight = 1
	MaxBackendWeight     = 1_000_000
	MaxRouteRetries      = 10
)

// Limits of a Route's lists.
const (
	maxRouteMatches  = 64
	maxHeaderMatches = 16
	maxRouteBackends = 16
)

// RouteKind declares the Route kind: which requests go to which weighted
// backends, through which RequestGuard. The engine compiles routes into
// the Director's (compilePolicy). It is a function, not a package
// variable, so that no caller can change another's.
func RouteKind() config.Kind {
	return config.Kind{
		Kind: KindRoute, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New:      func() config.Object { return new(Route) },
		Validate: func(o config.Object, f *config.Fields) { validateRoute(o.(*Route), f) },
		Check:    checkRoutes,
	}
}

// Routes are the Routes of cfg, in document order.
func Routes(cfg *config.Config) []*Route { return config.All[*Route](cfg) }

// Route (kind Route, igw.dev/v1alpha1) sends requests to weighted backends.
// A request matches a route when any of its matches does; among all
// matching routes the most specific match wins (see director.SelectRoute).
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
//	  attempt:                                # optional, per endpoint tried
//	    connectTimeout: 2s                    # default 2s
//	    firstByteTimeout: 30s                 # default: derived from the request
//	    retryAfterSend: true                  # default true
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

	// Attempt bounds each attempt on one endpoint, so a model server that
	// accepted a request and answers nothing costs the client one bounded
	// wait before the request moves on (see RouteAttempt).
	Attempt RouteAttempt `json:"attempt,omitempty"`

	// Guard names a RequestGuard of the route's namespace whose limits
	// and rules every request of this route must pass before anything
	// else is done with it.
	Guard string `json:"guard,omitempty"`

	// Hostnames, when set, restrict the route to requests whose Host is
	// one of them: exact names or "*.example.com" wildcards (Gateway
	// API's hostnames). Unset: any host.
	Hostnames []string `json:"hostnames,omitempty"`

	// RequestHeaders edits the request's headers once the route is
	// chosen, before the guard and the backend see them (Gateway API's
	// RequestHeaderModifier filter).
	RequestHeaders *RouteHeaderModifier `json:"requestHeaders,omitempty"`

	// PathRewrite changes the path sent to the backends (Gateway API's
	// URLRewrite filter); the route is still chosen by the request's path.
	PathRewrite *RoutePathRewrite `json:"pathRewrite,omitempty"`
}

// RouteHeaderModifier sets, adds and removes request headers. The
// gateway's routing headers (x-gateway-destination-endpoint and the like)
// cannot be set this way: they are the gateway's own.
type RouteHeaderModifier struct {
	// Set replaces each named header's values with this one.
	Set []HeaderValue `json:"set,omitempty"`
	// Add appends a value to each named header.
	Add []HeaderValue `json:"add,omitempty"`
	// Remove deletes these headers.
	Remove []string `json:"remove,omitempty"`
}

// HeaderValue is one header name and value.
type HeaderValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RoutePathRewrite rewrites the path sent to the backends: exactly one of
// its fields.
type RoutePathRewrite struct {
	// ReplaceFullPath sends every request of the route with this path.
	ReplaceFullPath *string `json:"replaceFullPath,omitempty"`
	// ReplacePrefixMatch replaces the part of the path that the route's
	// path prefix matched; every match of the route needs a PathPrefix.
	ReplacePrefixMatch *string `json:"replacePrefixMatch,omitempty"`
}

// RouteAttempt bounds one attempt of a request on one endpoint. A timed-out
// attempt is tried on the next endpoint (within the route's retries)
// while nothing has reached the client.
type RouteAttempt struct {
	// ConnectTimeout bounds opening a connection (default 2s).
	ConnectTimeout *metav1.Duration `json:"connectTimeout,omitempty"`

	// FirstByteTimeout bounds the wait from the request sent to the
	// response headers. Default: derived from the request — 10s, plus
	// 0.5ms per prompt token, plus, for a response that is not streamed,
	// 100ms per token of max_tokens (no bound without max_tokens).
	FirstByteTimeout *metav1.Duration `json:"firstByteTimeout,omitempty"`

	// RetryAfterSend allows trying another endpoint after the request was
	// sent and no answer came (the connection broke, or the first-byte
	// timeout passed); default true. The first server may have started
	// on the request, so it may run twice: set false for requests with
	// side effects. Failures the server answered (5xx) are retried either
	// way; a response that started is never retried.
	RetryAfterSend *bool `json:"retryAfterSend,omitempty"`
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

func validateRoute(r *Route, f *config.Fields) {
	s := &r.Spec
	if n := len(s.Matches); n > maxRouteMatches {
		f.Errorf("spec.matches", "at most %d matches, not %d", maxRouteMatches, n)
	}
	for i := range s.Matches {
		validateRouteMatch(f, fmt.Sprintf("spec.matches[%d]", i), &s.Matches[i])
	}

	switch n := len(s.Backends); {
	case n == 0:
		f.Errorf("spec.backends", "required: at least one backend")
	case n > maxRouteBackends:
		f.Errorf("spec.backends", "at most %d backends, not %d", maxRouteBackends, n)
	}
	total := int64(0)
	for i := range s.Backends {
		b := &s.Backends[i]
		bf := fmt.Sprintf("spec.backends[%d]", i)
		switch {
		case b.Pool == "" && b.URL == "":
			f.Errorf(bf, "set pool (an InferencePool name) or url")
		case b.Pool != "" && b.URL != "":
			f.Errorf(bf, "set pool or url, not both")
		case b.Pool != "":
			f.DNSSubdomain(bf+".pool", b.Pool)
		default:
			validateBackendURL(f, bf+".url", b.URL)
		}
		if b.Weight == nil {
			w := int32(DefaultBackendWeight)
			b.Weight = &w
		}
		if w := *b.Weight; w < 0 || w > MaxBackendWeight {
			f.Errorf(bf+".weight", "must be 0..1000000, not %d", w)
		} else {
			total += int64(w)
		}
	}
	if len(s.Backends) > 0 && total == 0 {
		f.Errorf("spec.backends", "at least one backend needs a weight above 0")
	}

	if s.Timeout != nil {
		f.NonNegativeDuration("spec.timeout", s.Timeout.Duration)
	}
	if d := s.Attempt.ConnectTimeout; d != nil && d.Duration <= 0 {
		f.Errorf("spec.attempt.connectTimeout", "must be positive, not %s", d.Duration)
	}
	if d := s.Attempt.FirstByteTimeout; d != nil && d.Duration <= 0 {
		f.Errorf("spec.attempt.firstByteTimeout", "must be positive, not %s", d.Duration)
	}
	for i, h := range s.Hostnames {
		validateHostname(f, fmt.Sprintf("spec.hostnames[%d]", i), h)
	}
	if m := s.RequestHeaders; m != nil {
		for i, kv := range m.Set {
			validateEditedHeader(f, fmt.Sprintf("spec.requestHeaders.set[%d].name", i), kv.Name)
		}
		for i, kv := range m.Add {
			validateEditedHeader(f, fmt.Sprintf("spec.requestHeaders.add[%d].name", i), kv.Name)
		}
		for i, name := range m.Remove {
			validateEditedHeader(f, fmt.Sprintf("spec.requestHeaders.remove[%d]", i), name)
		}
	}
	if pr := s.PathRewrite; pr != nil {
		switch {
		case (pr.ReplaceFullPath == nil) == (pr.ReplacePrefixMatch == nil):
			f.Errorf("spec.pathRewrite", "set exactly one of replaceFullPath and replacePrefixMatch")
		case pr.ReplaceFullPath != nil && !strings.HasPrefix(*pr.ReplaceFullPath, "/"):
			f.Errorf("spec.pathRewrite.replaceFullPath", "must start with \"/\", not %q", *pr.ReplaceFullPath)
		case pr.ReplacePrefixMatch != nil && !strings.HasPrefix(*pr.ReplacePrefixMatch, "/"):
			f.Errorf("spec.pathRewrite.replacePrefixMatch", "must start with \"/\", not %q", *pr.ReplacePrefixMatch)
		case pr.ReplacePrefixMatch != nil:
			for i, m := range s.Matches {
				if m.Path == nil || m.Path.Type == PathMatchExact {
					f.Errorf(fmt.Sprintf("spec.matches[%d].path", i), "replacePrefixMatch needs every match to have a PathPrefix path")
				}
			}
			if len(s.Matches) == 0 {
				f.Errorf("spec.pathRewrite.replacePrefixMatch", "needs matches with a PathPrefix path")
			}
		}
	}
	if s.Retries == nil {
		n := int32(DefaultRouteRetries)
		s.Retries = &n
	}
	if n := *s.Retries; n < 0 || n > MaxRouteRetries {
		f.Errorf("spec.retries", "must be 0..%d, not %d", MaxRouteRetries, n)
	}
}

func validateRouteMatch(f *config.Fields, mf string, m *RouteMatch) {
	if mm := m.Model; mm != nil {
		switch mm.Type {
		case "":
			mm.Type = ModelMatchExact
		case ModelMatchExact, ModelMatchPrefix:
		default:
			f.Errorf(mf+".model.type", "must be %s or %s, not %q", ModelMatchExact, ModelMatchPrefix, mm.Type)
		}
		f.ModelName(mf+".model.value", mm.Value)
	}
	if pm := m.Path; pm != nil {
		switch pm.Type {
		case "":
			pm.Type = PathMatchPathPrefix
		case PathMatchExact, PathMatchPathPrefix:
		default:
			f.Errorf(mf+".path.type", "must be %s or %s, not %q", PathMatchExact, PathMatchPathPrefix, pm.Type)
		}
		if !strings.HasPrefix(pm.Value, "/") {
			f.Errorf(mf+".path.value", "must start with \"/\", not %q", pm.Value)
		}
	}
	if n := len(m.Headers); n > maxHeaderMatches {
		f.Errorf(mf+".headers", "at most %d headers, not %d", maxHeaderMatches, n)
	}
	seen := map[string]int{}
	for i := range m.Headers {
		h := &m.Headers[i]
		hf := fmt.Sprintf("%s.headers[%d]", mf, i)
		if h.Type == "" {
			h.Type = HeaderMatchExact
		}
		if h.Type != HeaderMatchExact {
			f.Errorf(hf+".type", "must be %s, not %q", HeaderMatchExact, h.Type)
		}
		if !isHTTPToken(h.Name) {
			f.Errorf(hf+".name", "must be an HTTP header name, not %q", h.Name)
			continue
		}
		key := strings.ToLower(h.Name)
		if j, dup := seen[key]; dup {
			f.Errorf(hf+".name", "duplicate header %q (also headers[%d]); a header can only equal one value", h.Name, j)
		}
		seen[key] = i
	}
}

func validateBackendURL(f *config.Fields, field, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		f.Errorf(field, "invalid URL: %v", err)
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		f.Errorf(field, "must be an http:// or https:// URL, not %q", raw)
	case u.Host == "":
		f.Errorf(field, "must include a host, not %q", raw)
	case u.User != nil:
		f.Errorf(field, "must not contain credentials")
	case u.RawQuery != "" || u.Fragment != "":
		f.Errorf(field, "must not have a query or fragment, not %q", raw)
	}
}

// validateHostname accepts a lowercase DNS name, optionally "*." first.
func validateHostname(f *config.Fields, field, h string) {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.Contains(name, "*") || strings.ToLower(name) != name || strings.Contains(name, ":") {
		f.Errorf(field, "must be a lowercase host name, optionally starting with \"*.\", not %q", h)
		return
	}
	f.DNSSubdomain(field, name)
}

// validateEditedHeader accepts a header name a route may edit: not one of
// the gateway's routing headers, which clients and routes never choose.
func validateEditedHeader(f *config.Fields, field, name string) {
	if !isHTTPToken(name) {
		f.Errorf(field, "must be an HTTP header name, not %q", name)
		return
	}
	if director.IsRoutingHeader(name) {
		f.Errorf(field, "%s is the gateway's own routing header; a route cannot set or remove it", name)
	}
}

// isHTTPToken reports whether s is a valid HTTP field name (RFC 9110
// token).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkRoutes checks each route's references (its guard, its pools),
// gives a route without a timeout the configuration's request timeout
// (RequestBounds), and reports routes whose matches select exactly the
// same requests.
func checkRoutes(cfg *config.Config, r *config.Report) {
	bounds, hasBounds := config.First[RequestBounds](cfg)
	seenMatch := map[string]string{} // match key → "Route "x" spec.matches[i]"
	for _, rt := range Routes(cfg) {
		f := r.In(rt)
		if rt.Spec.Guard != "" && guard.Find(cfg, rt.Namespace, rt.Spec.Guard) == nil {
			f.Errorf("spec.guard", "RequestGuard %q not found in namespace %q", rt.Spec.Guard, rt.Namespace)
		}
		for i, b := range rt.Spec.Backends {
			if b.Pool != "" && static.Pool(cfg, rt.Namespace, b.Pool) == nil {
				f.Errorf(fmt.Sprintf("spec.backends[%d].pool", i), "InferencePool %q not found in namespace %q", b.Pool, rt.Namespace)
			}
		}
		if rt.Spec.Timeout == nil && hasBounds {
			rt.Spec.Timeout = &metav1.Duration{Duration: bounds.RequestTimeout()}
		}
		keys := make([]string, 0, len(rt.Spec.Matches))
		fields := make([]string, 0, len(rt.Spec.Matches))
		hosts := slices.Sorted(slices.Values(rt.Spec.Hostnames))
		hostKey := "\x00hosts=" + strings.Join(hosts, ",")
		if len(rt.Spec.Matches) == 0 {
			keys, fields = append(keys, matchKey(RouteMatch{})+hostKey), append(fields, "spec.matches")
		}
		for i, m := range rt.Spec.Matches {
			keys, fields = append(keys, matchKey(m)+hostKey), append(fields, fmt.Sprintf("spec.matches[%d]", i))
		}
		for i, k := range keys {
			if prev, dup := seenMatch[k]; dup {
				f.Errorf(fields[i], "matches exactly the same requests as %s; which route wins would be arbitrary", prev)
				continue
			}
			seenMatch[k] = fmt.Sprintf("Route %q %s", rt.Name, fields[i])
		}
	}
}

// matchKey identifies what a route match selects, so that two matches
// selecting exactly the same requests can be found. Namespaces are not part
// of it: a request carries no namespace, so routes of every namespace
// compete for it.
func matchKey(m RouteMatch) string {
	var b strings.Builder
	if m.Model != nil {
		fmt.Fprintf(&b, "\x00model=%s:%s", m.Model.Type, m.Model.Value)
	}
	if m.Path != nil {
		fmt.Fprintf(&b, "\x00path=%s:%s", m.Path.Type, m.Path.Value)
	}
	hs := make([]string, 0, len(m.Headers))
	for _, h := range m.Headers {
		hs = append(hs, strings.ToLower(h.Name)+"="+h.Value)
	}
	slices.Sort(hs)
	for _, h := range hs {
		b.WriteString("\x00header=" + h)
	}
	return b.String()
}
