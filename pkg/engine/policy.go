package engine

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/guard"
)

// Annotations of an InferencePool that configure how igw serve reaches its
// remote picker (spec.endpointPickerRef). They are igw's, not part of the
// InferencePool API, which leaves transport details to the gateway.
const (
	// AnnotationPickerTLS is how the picker connection is secured:
	// "insecure-skip-verify" (the default: TLS without verifying the
	// certificate, matching the self-signed certificate pickers serve by
	// default with --secure-serving), "verify" (TLS verified against the
	// system roots) or "plaintext" (a picker run with
	// --secure-serving=false).
	AnnotationPickerTLS = "igw.dev/endpoint-picker-tls"
	// AnnotationPickerTimeout bounds the picker's answer to one request
	// (a Go duration, default DefaultPickerTimeout). Past it the pool's
	// failureMode applies.
	AnnotationPickerTimeout = "igw.dev/endpoint-picker-timeout"

	// PickerTLSSkipVerify, PickerTLSVerify and PickerTLSPlaintext are the
	// values of AnnotationPickerTLS.
	PickerTLSSkipVerify = "insecure-skip-verify"
	PickerTLSVerify     = "verify"
	PickerTLSPlaintext  = "plaintext"

	// DefaultPickerTimeout bounds a remote picker's decision: a picker
	// that has not answered by then is treated as unavailable.
	DefaultPickerTimeout = 500 * time.Millisecond
)

// Annotations of an InferencePool that tune how the Director treats its
// failing endpoints (outlier detection and the retry budget; see
// director.Resilience and package outlier). Each is optional; an absent
// one keeps its default.
const (
	// AnnotationOutlierConsecutiveFailures ejects an endpoint after this
	// many failed attempts in a row (5xx, connection error, timeout);
	// "0" turns outlier detection off (default 5).
	AnnotationOutlierConsecutiveFailures = "igw.dev/outlier-consecutive-failures"
	// AnnotationOutlierBaseEjectionTime is the first ejection's length, a
	// Go duration doubled per ejection in a row (default 10s).
	AnnotationOutlierBaseEjectionTime = "igw.dev/outlier-base-ejection-time"
	// AnnotationOutlierMaxEjectionTime caps the doubling (default 5m).
	AnnotationOutlierMaxEjectionTime = "igw.dev/outlier-max-ejection-time"
	// AnnotationOutlierMaxEjectionPercent bounds the share of the pool's
	// endpoints ejected at once, 0..100 (default 50).
	AnnotationOutlierMaxEjectionPercent = "igw.dev/outlier-max-ejection-percent"
	// AnnotationRetryBudgetPercent is the share of the pool's active
	// requests that may be retrying at once, 0..100 (default 20).
	AnnotationRetryBudgetPercent = "igw.dev/retry-budget-percent"
	// AnnotationRetryBudgetMinRetries is how many requests may be
	// retrying at once whatever the traffic (default 3).
	AnnotationRetryBudgetMinRetries = "igw.dev/retry-budget-min-retries"
)

// compilePolicy builds the request policies of cfg: routes with their
// guards and backends resolved, authentication and the admission policy,
// so a bad configuration fails at load and never on a request. An engine
// serving one pool keeps only the routes that send to it (they decide
// which models it takes and which guard applies); its other backends are
// another data plane's business.
func (e *Engine) compilePolicy(cfg *config.Config, prev *director.Policy) (*director.Policy, error) {
	pol := &director.Policy{}
	if b, ok := config.First[RequestBounds](cfg); ok {
		pol.MaxBodyBytes = b.MaxRequestBodyBytes()
	}
	models := map[string]bool{}
	for _, r := range Routes(cfg) {
		name := r.Namespace + "/" + r.Name
		var backends []director.Backend
		for i, b := range r.Spec.Backends {
			w := int64(DefaultBackendWeight)
			if b.Weight != nil {
				w = int64(*b.Weight)
			}
			be := director.Backend{Weight: w}
			switch {
			case b.Pool != "":
				p := static.Pool(cfg, r.Namespace, b.Pool)
				if p == nil && !e.external {
					return nil, fmt.Errorf("route %s: backends[%d]: no InferencePool %q", name, i, b.Pool)
				}
				be.Pool = config.NamespacedName(r.Namespace, b.Pool)
				if p != nil {
					rp, err := remotePickerOf(p)
					if err != nil {
						return nil, err
					}
					be.Remote = rp
				}
			default:
				u, err := url.Parse(b.URL)
				if err != nil {
					return nil, fmt.Errorf("route %s: backends[%d].url: %w", name, i, err)
				}
				be.URL = u
			}
			if e.pool != "" && be.Pool != e.pool {
				continue
			}
			backends = append(backends, be)
		}
		if len(backends) == 0 && e.pool != "" {
			continue // a route of other backends only
		}
		var g *guard.Guard
		if r.Spec.Guard != "" {
			gc := guard.Find(cfg, r.Namespace, r.Spec.Guard)
			if gc == nil {
				return nil, fmt.Errorf("route %s: spec.guard: no RequestGuard %q", name, r.Spec.Guard)
			}
			var err error
			if g, err = guard.New(gc, e.guardOptions()); err != nil {
				return nil, err
			}
		}
		var timeout time.Duration
		if r.Spec.Timeout != nil {
			timeout = r.Spec.Timeout.Duration
		}
		retries := DefaultRouteRetries
		if r.Spec.Retries != nil {
			retries = int(*r.Spec.Retries)
		}
		route := director.NewRoute(name, routeMatches(r.Spec.Matches), g, timeout, retries, backends)
		route.Attempt = attemptPolicy(r.Spec.Attempt)
		route.Hostnames = r.Spec.Hostnames
		if m := r.Spec.RequestHeaders; m != nil {
			hm := &director.HeaderModifier{Remove: m.Remove}
			for _, kv := range m.Set {
				hm.Set = append(hm.Set, director.HeaderMatch{Name: kv.Name, Value: kv.Value})
			}
			for _, kv := range m.Add {
				hm.Add = append(hm.Add, director.HeaderMatch{Name: kv.Name, Value: kv.Value})
			}
			route.RequestHeaders = hm
		}
		if pr := r.Spec.PathRewrite; pr != nil {
			if pr.ReplacePrefixMatch != nil {
				route.PathRewrite = &director.PathRewrite{Prefix: pr.ReplacePrefixMatch}
			} else if pr.ReplaceFullPath != nil {
				route.PathRewrite = &director.PathRewrite{Full: *pr.ReplaceFullPath}
			}
		}
		if route.Total <= 0 {
			return nil, fmt.Errorf("route %s: every backend has weight 0", name)
		}
		pol.Routes = append(pol.Routes, route)
		for _, m := range r.Spec.Matches {
			if m.Model != nil && (m.Model.Type == "" || m.Model.Type == ModelMatchExact) {
				models[m.Model.Value] = true
			}
		}
	}
	for _, p := range static.Pools(cfg) {
		if e.pool != "" && config.NamespacedName(p.Namespace, p.Name) != e.pool {
			continue
		}
		r, err := resilienceOf(p)
		if err != nil {
			return nil, err
		}
		if pol.Resilience == nil {
			pol.Resilience = map[string]director.Resilience{}
		}
		pol.Resilience[config.NamespacedName(p.Namespace, p.Name)] = r
	}
	for m := range models {
		pol.Models = append(pol.Models, m)
	}
	slices.Sort(pol.Models)
	var err error
	if pol.Auth, err = auth.New(cfg); err != nil {
		return nil, err
	}
	var prevAdmission director.Admission
	if prev != nil {
		prevAdmission = prev.Admission
	}
	if pol.Admission, err = e.admission(cfg, prevAdmission); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Source, err)
	}
	return pol, nil
}

// routeMatches copies a Route's matches into the Director's form.
func routeMatches(ms []RouteMatch) []director.RouteMatch {
	out := make([]director.RouteMatch, 0, len(ms))
	for _, m := range ms {
		var dm director.RouteMatch
		if m.Model != nil {
			dm.Model, dm.ModelPrefix = m.Model.Value, m.Model.Type == ModelMatchPrefix
		}
		if m.Path != nil {
			dm.Path, dm.PathExact = m.Path.Value, m.Path.Type == PathMatchExact
		}
		for _, h := range m.Headers {
			dm.Headers = append(dm.Headers, director.HeaderMatch{Name: h.Name, Value: h.Value})
		}
		out = append(out, dm)
	}
	return out
}

// remotePickerOf resolves a pool's endpointPickerRef; nil when the pool is
// scheduled by the embedded Director. Standalone, there is no Service to
// resolve, so the ref's name is dialled as a host: an IP address or a DNS
// name, with port.number.
func remotePickerOf(p *v1.InferencePool) (*director.RemotePicker, error) {
	ref := p.Spec.EndpointPickerRef
	if ref == nil {
		return nil, nil
	}
	if ref.Port == nil {
		return nil, fmt.Errorf("inferencepool %s/%s: spec.endpointPickerRef.port is required to reach the picker", p.Namespace, p.Name)
	}
	rp := &director.RemotePicker{
		Target:   net.JoinHostPort(string(ref.Name), strconv.Itoa(int(ref.Port.Number))),
		TLS:      PickerTLSSkipVerify,
		Timeout:  DefaultPickerTimeout,
		FailOpen: ref.FailureMode == v1.EndpointPickerFailOpen,
	}
	if v, ok := p.Annotations[AnnotationPickerTLS]; ok {
		switch v {
		case PickerTLSSkipVerify, PickerTLSVerify, PickerTLSPlaintext:
			rp.TLS = v
		default:
			return nil, fmt.Errorf("inferencepool %s/%s: annotation %s must be %s, %s or %s, not %q",
				p.Namespace, p.Name, AnnotationPickerTLS, PickerTLSSkipVerify, PickerTLSVerify, PickerTLSPlaintext, v)
		}
	}
	if v, ok := p.Annotations[AnnotationPickerTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("inferencepool %s/%s: annotation %s must be a positive duration, not %q", p.Namespace, p.Name, AnnotationPickerTimeout, v)
		}
		rp.Timeout = d
	}
	return rp, nil
}

// resilienceOf reads a pool's outlier detection and retry budget
// annotations over the defaults; a bad value is an error naming the
// annotation.
func resilienceOf(p *v1.InferencePool) (director.Resilience, error) {
	r := director.DefaultResilience()
	bad := func(key, want, v string) error {
		return fmt.Errorf("inferencepool %s/%s: annotation %s must be %s, not %q", p.Namespace, p.Name, key, want, v)
	}
	ints := []struct {
		key      string
		dst      *int
		min, max int
	}{
		{AnnotationOutlierConsecutiveFailures, &r.Outlier.ConsecutiveFailures, 0, 1 << 20},
		{AnnotationOutlierMaxEjectionPercent, &r.Outlier.MaxEjectionPercent, 0, 100},
		{AnnotationRetryBudgetPercent, &r.RetryBudget.Percent, 0, 100},
		{AnnotationRetryBudgetMinRetries, &r.RetryBudget.MinRetries, 0, 1 << 20},
	}
	for _, a := range ints {
		v, ok := p.Annotations[a.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < a.min || n > a.max {
			return r, bad(a.key, fmt.Sprintf("an integer %d..%d", a.min, a.max), v)
		}
		*a.dst = n
	}
	for _, a := range []struct {
		key string
		dst *time.Duration
	}{
		{AnnotationOutlierBaseEjectionTime, &r.Outlier.BaseEjectionTime},
		{AnnotationOutlierMaxEjectionTime, &r.Outlier.MaxEjectionTime},
	} {
		v, ok := p.Annotations[a.key]
		if !ok {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return r, bad(a.key, "a positive duration", v)
		}
		*a.dst = d
	}
	if _, ok := p.Annotations[AnnotationOutlierMaxEjectionTime]; !ok && r.Outlier.MaxEjectionTime < r.Outlier.BaseEjectionTime {
		r.Outlier.MaxEjectionTime = r.Outlier.BaseEjectionTime // a long base with the default cap
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("inferencepool %s/%s: %w", p.Namespace, p.Name, err)
	}
	return r, nil
}

// closeAdmission closes a replaced or stopped admission policy that holds
// resources.
func closeAdmission(a director.Admission) {
	if c, ok := a.(io.Closer); ok {
		_ = c.Close()
	}
}

// attemptPolicy compiles a route's attempt bounds (unset: the Director's
// defaults).
func attemptPolicy(a RouteAttempt) director.AttemptPolicy {
	var p director.AttemptPolicy
	if a.ConnectTimeout != nil {
		p.Connect = a.ConnectTimeout.Duration
	}
	if a.FirstByteTimeout != nil {
		p.FirstByte = a.FirstByteTimeout.Duration
	}
	p.NoRetryAfterSend = a.RetryAfterSend != nil && !*a.RetryAfterSend
	return p
}
