package director

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the lifecycle (REFERENCE §2–§3), in the canonical form
// of net/http. The ext_proc wire carries them lower-case; http.Header
// lookups canonicalize either spelling, so both data planes hand the
// Director the same names.
const (
	HeaderModelName           = "X-Gateway-Model-Name"
	HeaderBaseModelName       = "X-Gateway-Base-Model-Name"
	HeaderDestinationEndpoint = "X-Gateway-Destination-Endpoint"
	HeaderDestinationServed   = "X-Gateway-Destination-Endpoint-Served"
	HeaderDestinationSubset   = "X-Gateway-Destination-Endpoint-Subset"
	HeaderInferenceObjective  = "X-Gateway-Inference-Objective"
	HeaderInferenceFairnessID = "X-Gateway-Inference-Fairness-Id"
	// HeaderGuardRule names the request-guard rule that refused a request.
	HeaderGuardRule = "X-Gateway-Guard-Rule"
	// HeaderRetryAfter is sent with every 429 the Director gives, so
	// clients back off instead of hammering a saturated pool.
	HeaderRetryAfter = "Retry-After"
	// HeaderWWWAuthenticate carries the RFC 6750 challenge of a 401.
	HeaderWWWAuthenticate = "Www-Authenticate"
	// HeaderDebugDecision, set to "1" on a request, asks for the
	// scheduling decision explained in the response's HeaderDecision —
	// honoured only when the Director was built with ExplainDecisions,
	// since the answer shows the pool's endpoints and their load.
	HeaderDebugDecision = "X-Igw-Debug-Decision"
	// HeaderDecision carries a scheduling.Explanation as JSON: the
	// profile, the top candidates' per-scorer scores and the picks.
	HeaderDecision = "X-Igw-Decision"
)

// maxExplainedCandidates bounds the candidates per profile in
// HeaderDecision, so a large pool's explanation fits a response header.
const maxExplainedCandidates = 10

// RetryAfterValue is d as a Retry-After value: whole seconds, rounded up
// (a client retrying on time must find room) and at least 1. Every 429
// the gateway gives formats it here (admission, quotas).
func RetryAfterValue(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// RoutingHeaders are set only by the gateway (or the Director): whatever a
// client sends under these names is removed before anything reads the
// request, so a client can never choose the endpoint or claim a decision.
var routingHeaders = [...]string{
	HeaderModelName, HeaderBaseModelName, HeaderDestinationEndpoint, HeaderDestinationServed,
	HeaderDestinationSubset, DroppedReasonHeader,
}

// IsRoutingHeader reports whether name (any case) is a header only the
// gateway may set; the data planes use it to filter what they forward.
func IsRoutingHeader(name string) bool {
	for _, h := range routingHeaders {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// pluginHeaders are the request headers scheduling plugins may read,
// lower-cased (e.g. session affinity keys), first value only.
func pluginHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			out[lowerHeaderName(k)] = v[0]
		}
	}
	return out
}

// lowerHeaderName lower-cases a canonical header name, without allocating
// for the headers most requests carry.
func lowerHeaderName(k string) string {
	if l, ok := commonLowerHeaders[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// commonLowerHeaders maps canonical names of common request headers to
// their lower-case form. It is fixed (never written after init): caching
// names clients send would let them grow it without bound.
var commonLowerHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Host", "Origin", "Referer", "User-Agent",
		"Traceparent", "Tracestate", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
		"Openai-Organization", "Openai-Project", "X-Stainless-Lang", "X-Stainless-Package-Version",
		"X-Stainless-Os", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version",
		"X-Stainless-Retry-Count", "X-Stainless-Timeout", "X-Stainless-Async", "X-Api-Key",
		"X-Envoy-Expected-Rq-Timeout-Ms", "X-Envoy-Internal", "X-Forwarded-Client-Cert",
		HeaderModelName, HeaderInferenceObjective, HeaderInferenceFairnessID,
	} {
		m[http.CanonicalHeaderKey(k)] = strings.ToLower(k)
	}
	return m
}()

// HeaderFromLower builds an http.Header from lower-case names (as the
// ext_proc wire and HTTP/2 carry them), skipping pseudo-headers. It is the
// one conversion the ext_proc plane does, so the Director reads headers by
// the same names whichever plane a request came through.
func HeaderFromLower(m map[string]string) http.Header {
	h := make(http.Header, len(m))
	for k, v := range m {
		if len(k) > 0 && k[0] == ':' {
			continue
		}
		h[canonicalFromLower(k)] = []string{v}
	}
	return h
}

// canonicalFromLower is http.CanonicalHeaderKey without an allocation for
// the common names.
func canonicalFromLower(k string) string {
	if c, ok := commonCanonical[k]; ok {
		return c
	}
	return http.CanonicalHeaderKey(k)
}

// commonCanonical inverts commonLowerHeaders; fixed, like it.
var commonCanonical = func() map[string]string {
	m := make(map[string]string, len(commonLowerHeaders))
	for c, l := range commonLowerHeaders {
		m[l] = c
	}
	return m
}()
