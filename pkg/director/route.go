package director

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/policy/guard"
)

// Route is one compiled route: which requests it takes, the request guard
// they pass, and the weighted backends they go to. The engine builds routes
// from configuration; the Director selects one per request, the same way
// for both data planes.
type Route struct {
	// Name is namespace/name, for logs and quotas.
	Name    string
	Matches []RouteMatch
	// Guard is the route's RequestGuard, or nil.
	Guard *guard.Guard
	// Timeout bounds the whole request (0: none) and Retries the attempts
	// after the first, before the first response byte; both are for a data
	// plane that proxies itself (Envoy has its own).
	Timeout time.Duration
	Retries int
	// Attempt bounds each attempt on one endpoint.
	Attempt AttemptPolicy
	// Backends and the sum of their weights.
	Backends []Backend
	Total    int64
	// Hostnames, when set, are the only request hosts (the Host header
	// without its port) the route serves: exact names or "*.suffix"
	// wildcards, as in Gateway API.
	Hostnames []string
	// RequestHeaders edits the request's headers once the route is
	// chosen (Gateway API's RequestHeaderModifier); nil: none.
	RequestHeaders *HeaderModifier
	// PathRewrite replaces the path sent to the backend (Gateway API's
	// URLRewrite); nil: the request's path.
	PathRewrite *PathRewrite
}

// HeaderModifier sets, adds and removes request headers. Set replaces a
// header's values, Add appends one, Remove deletes the header; the
// gateway's routing headers stay the gateway's own whatever they say.
type HeaderModifier struct {
	Set, Add []HeaderMatch
	Remove   []string
}

// PathRewrite rewrites the path sent to the backend: the whole path
// (Full), or, with Prefix set, the part that the route's PathPrefix match
// matched is replaced by Prefix.
type PathRewrite struct {
	Full   string
	Prefix *string
}

// apply edits h.
func (m *HeaderModifier) apply(h http.Header) {
	for _, kv := range m.Set {
		h.Set(kv.Name, kv.Value)
	}
	for _, kv := range m.Add {
		h.Add(kv.Name, kv.Value)
	}
	for _, name := range m.Remove {
		h.Del(name)
	}
}

// UpstreamPath is the path a request for path is sent to the backend with.
func (r *Route) UpstreamPath(path string) string {
	pr := r.PathRewrite
	if pr == nil {
		return path
	}
	if pr.Prefix == nil {
		return pr.Full
	}
	for _, m := range r.Matches {
		if m.Path == "" || m.PathExact {
			continue
		}
		prefix := strings.TrimSuffix(m.Path, "/")
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			rest := strings.TrimPrefix(path, prefix)
			out := strings.TrimSuffix(*pr.Prefix, "/") + rest
			if out == "" {
				return "/"
			}
			return out
		}
	}
	return path
}

// servesHost reports whether the route takes requests for host (the Host
// header, possibly with a port).
func (r *Route) servesHost(host string) bool {
	if len(r.Hostnames) == 0 {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	for _, pattern := range r.Hostnames {
		pattern = strings.ToLower(pattern)
		if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if pattern == host {
			return true
		}
	}
	return false
}

// RouteMatch is one way a request matches a route: every part set must
// hold. Zero values match everything.
type RouteMatch struct {
	// Model is the body's model, exact or (ModelPrefix) a prefix.
	Model       string
	ModelPrefix bool
	// Path is the URL path, exact (PathExact) or by whole segments.
	Path      string
	PathExact bool
	// Headers must all be present with these values.
	Headers []HeaderMatch
}

// HeaderMatch is one required header value.
type HeaderMatch struct{ Name, Value string }

// Backend is where a route sends a share of its requests: an InferencePool
// (scheduled by this Director, or by the pool's remote picker) or a plain
// URL.
type Backend struct {
	// Pool is the pool's namespace/name, or "".
	Pool string
	// URL, when Pool is "", is the base URL requests go to.
	URL *url.URL
	// Remote, for a pool with an endpointPickerRef, is how the data plane
	// reaches that picker; nil when this Director schedules the pool.
	Remote *RemotePicker
	Weight int64
}

// RemotePicker is a pool's external Endpoint Picker, as resolved at load.
type RemotePicker struct {
	// Target is host:port; TLS is "insecure-skip-verify", "verify" or
	// "plaintext"; Timeout bounds one decision; FailOpen balances over the
	// pool when the picker cannot answer (else 503).
	Target   string
	TLS      string
	Timeout  time.Duration
	FailOpen bool
}

// NewRoute builds a route. Routes are handed to the Director in file
// order: an earlier route wins a tie.
func NewRoute(name string, matches []RouteMatch, g *guard.Guard, timeout time.Duration, retries int, backends []Backend) *Route {
	r := &Route{Name: name, Matches: matches, Guard: g, Timeout: timeout, Retries: retries, Backends: backends}
	for _, b := range backends {
		r.Total += b.Weight
	}
	return r
}

// pick chooses a backend by weight.
func (r *Route) pick() *Backend {
	if len(r.Backends) == 1 {
		return &r.Backends[0]
	}
	x := rand.Int64N(r.Total)
	for i := range r.Backends {
		x -= r.Backends[i].Weight
		if x < 0 {
			return &r.Backends[i]
		}
	}
	return &r.Backends[len(r.Backends)-1]
}

// matches reports whether a request with this body model, URL path and
// headers satisfies m.
func (m *RouteMatch) matches(model, path string, header http.Header) bool {
	if m.Model != "" {
		if m.ModelPrefix {
			if !strings.HasPrefix(model, m.Model) {
				return false
			}
		} else if model != m.Model {
			return false
		}
	}
	if m.Path != "" {
		if m.PathExact {
			if path != m.Path {
				return false
			}
		} else {
			// Whole segments: /v1 matches /v1 and /v1/x, not /v10; a
			// trailing slash in the value is ignored, as in Gateway API.
			prefix := strings.TrimSuffix(m.Path, "/")
			if prefix != "" && path != prefix && !strings.HasPrefix(path, prefix+"/") {
				return false
			}
		}
	}
	for _, h := range m.Headers {
		found := false
		for _, v := range header.Values(h.Name) {
			if v == h.Value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// specificity ranks a match so that the most specific matching route wins.
type specificity struct {
	model      int // 2 exact, 1 prefix, 0 any
	modelLen   int // length of the model prefix
	headers    int // number of header conditions
	pathExact  bool
	pathLength int
}

func (a specificity) moreThan(b specificity) bool {
	switch {
	case a.model != b.model:
		return a.model > b.model
	case a.modelLen != b.modelLen:
		return a.modelLen > b.modelLen
	case a.headers != b.headers:
		return a.headers > b.headers
	case a.pathExact != b.pathExact:
		return a.pathExact
	default:
		return a.pathLength > b.pathLength
	}
}

func specificityOf(m *RouteMatch) specificity {
	var s specificity
	if m.Model != "" {
		if m.ModelPrefix {
			s.model, s.modelLen = 1, len(m.Model)
		} else {
			s.model = 2
		}
	}
	s.headers = len(m.Headers)
	if m.Path != "" {
		s.pathExact = m.PathExact
		s.pathLength = len(m.Path)
	}
	return s
}

// SelectRoute returns the route serving a request with this body model,
// host, path and headers; routes with hostnames take only their hosts. When several match, the most specific match wins: an
// exact model beats a model prefix (a longer prefix a shorter one), which
// beats no model condition; then more header conditions; then an exact path
// beats a path prefix, a longer prefix a shorter one; then the earlier
// route. It returns nil when no route matches, which the Director answers
// with 404 rather than guessing a backend.
func SelectRoute(routes []*Route, model, host, path string, header http.Header) *Route {
	var (
		best     *Route
		bestSpec specificity
	)
	consider := func(r *Route, s specificity) {
		if best == nil || s.moreThan(bestSpec) {
			best, bestSpec = r, s
		}
	}
	for _, r := range routes {
		if !r.servesHost(host) {
			continue
		}
		if len(r.Matches) == 0 {
			consider(r, specificity{})
			continue
		}
		for i := range r.Matches {
			m := &r.Matches[i]
			if m.matches(model, path, header) {
				consider(r, specificityOf(m))
			}
		}
	}
	return best
}
