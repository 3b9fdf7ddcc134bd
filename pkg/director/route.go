package director

import (
	"math/rand/v2"
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
// path and headers. When several match, the most specific match wins: an
// exact model beats a model prefix (a longer prefix a shorter one), which
// beats no model condition; then more header conditions; then an exact path
// beats a path prefix, a longer prefix a shorter one; then the earlier
// route. It returns nil when no route matches, which the Director answers
// with 404 rather than guessing a backend.
func SelectRoute(routes []*Route, model, path string, header http.Header) *Route {
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
