package config

import (
	"net/http"
	"strings"
)

// Matches reports whether a request with this body model, URL path and
// headers satisfies m: every part that m sets must hold. The semantics are
// defined here, next to the schema, so that every data plane evaluates a
// route identically.
func (m *RouteMatch) Matches(model, path string, header http.Header) bool {
	if mm := m.Model; mm != nil {
		switch mm.Type {
		case ModelMatchPrefix:
			if !strings.HasPrefix(model, mm.Value) {
				return false
			}
		default:
			if model != mm.Value {
				return false
			}
		}
	}
	if pm := m.Path; pm != nil {
		switch pm.Type {
		case PathMatchExact:
			if path != pm.Value {
				return false
			}
		default:
			// Whole segments: /v1 matches /v1 and /v1/x, not /v10; a
			// trailing slash in the value is ignored, as in Gateway API.
			prefix := strings.TrimSuffix(pm.Value, "/")
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
	if m.Model != nil {
		if m.Model.Type == ModelMatchPrefix {
			s.model, s.modelLen = 1, len(m.Model.Value)
		} else {
			s.model = 2
		}
	}
	s.headers = len(m.Headers)
	if m.Path != nil {
		s.pathExact = m.Path.Type == PathMatchExact
		s.pathLength = len(m.Path.Value)
	}
	return s
}

// SelectRoute returns the route serving a request with this body model,
// path and headers, and the index of the match that selected it (-1 when
// the route has no matches, i.e. is a catch-all). When several routes
// match, the most specific match wins: an exact model beats a model prefix
// (a longer prefix beats a shorter one), which beats no model condition;
// then more header conditions win; then an exact path beats a path prefix,
// and a longer prefix a shorter one; then the earlier document. It returns
// nil when no route matches, which the gateway answers with 404 rather than
// guessing a backend.
func (c *Config) SelectRoute(model, path string, header http.Header) (*Route, int) {
	var (
		best      *Route
		bestIndex = -1
		bestSpec  specificity
	)
	consider := func(r *Route, i int, s specificity) {
		if best == nil || s.moreThan(bestSpec) {
			best, bestIndex, bestSpec = r, i, s
		}
	}
	for _, r := range c.Routes {
		if len(r.Spec.Matches) == 0 {
			consider(r, -1, specificity{})
			continue
		}
		for i := range r.Spec.Matches {
			m := &r.Spec.Matches[i]
			if m.Matches(model, path, header) {
				consider(r, i, specificityOf(m))
			}
		}
	}
	return best, bestIndex
}
