package scheduling

import (
	"errors"
	"fmt"

	"github.com/igw-dev/igw/pkg/datastore"
)

// ProfileResult is the choice one scheduling profile made.
type ProfileResult struct {
	// Profile is the profile's name.
	Profile string
	// Endpoints are the chosen endpoints, the primary first and then the
	// fallbacks in the order they should be retried. Never empty.
	Endpoints []*datastore.Endpoint
}

// Result is the outcome of one scheduling cycle: the endpoint to send the
// request to and the fallbacks to retry on if it fails before the first
// response byte.
type Result struct {
	// PrimaryProfile names the profile in Profiles whose endpoints the
	// request is sent to (the only one with single-profile-handler).
	PrimaryProfile string
	// Profiles are the results of every profile that ran, in run order.
	Profiles []ProfileResult

	// Inline storage so a cycle allocates the Result only once in the
	// common case.
	profilesBuf [1]ProfileResult
	endpointBuf [4]*datastore.Endpoint
}

// primary returns the primary profile's result (nil when none matches).
func (r *Result) primary() *ProfileResult {
	for i := range r.Profiles {
		if r.Profiles[i].Profile == r.PrimaryProfile {
			return &r.Profiles[i]
		}
	}
	return nil
}

// Primary is the endpoint to send the request to.
func (r *Result) Primary() *datastore.Endpoint {
	if p := r.primary(); p != nil && len(p.Endpoints) > 0 {
		return p.Endpoints[0]
	}
	return nil
}

// Fallbacks are the endpoints to retry on, in order, when the primary fails
// before the first response byte.
func (r *Result) Fallbacks() []*datastore.Endpoint {
	if p := r.primary(); p != nil && len(p.Endpoints) > 1 {
		return p.Endpoints[1:]
	}
	return nil
}

// Endpoints is the primary followed by the fallbacks: the ordered list the
// ext_proc picker sends as x-gateway-destination-endpoint.
func (r *Result) Endpoints() []*datastore.Endpoint {
	if p := r.primary(); p != nil {
		return p.Endpoints
	}
	return nil
}

// Reason is a short machine-readable cause of a scheduling failure, stable
// enough for metrics labels and the x-gateway-request-dropped-reason family
// of headers.
type Reason string

// Reasons a scheduling cycle can fail with.
const (
	// ReasonNoCandidates: the caller handed in no endpoints (empty pool or
	// empty subset hint).
	ReasonNoCandidates Reason = "no-candidates"
	// ReasonFilteredOut: filters removed every candidate.
	ReasonFilteredOut Reason = "filtered-out"
	// ReasonNoProfile: the profile handler ran no profile or chose an
	// unknown primary.
	ReasonNoProfile Reason = "no-profile"
	// ReasonCanceled: the context ended before a decision.
	ReasonCanceled Reason = "canceled"
)

// ErrNoEndpoint is the sentinel every scheduling failure wraps, so callers
// can map "no endpoint can serve this" to 503 with errors.Is and read the
// details with errors.As(*Error).
var ErrNoEndpoint = errors.New("no endpoint available")

// Error is a scheduling failure with its reason and where it happened.
type Error struct {
	// Reason classifies the failure.
	Reason Reason
	// Profile is the profile that failed, if any.
	Profile string
	// Plugin is the plugin that caused it, if any (e.g. the filter that
	// removed the last candidate).
	Plugin string
	// Err is the underlying error; it wraps ErrNoEndpoint unless the
	// failure was a canceled context.
	Err error
}

// Error renders the failure with its reason and location.
func (e *Error) Error() string {
	s := "scheduling: " + string(e.Reason)
	if e.Profile != "" {
		s += ": profile " + e.Profile
	}
	if e.Plugin != "" {
		s += ": plugin " + e.Plugin
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes the cause for errors.Is / errors.As.
func (e *Error) Unwrap() error { return e.Err }

func newError(reason Reason, profile, plugin string, format string, args ...any) *Error {
	return &Error{Reason: reason, Profile: profile, Plugin: plugin,
		Err: fmt.Errorf(format+": %w", append(args, ErrNoEndpoint)...)}
}
