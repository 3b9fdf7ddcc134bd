package scheduling

import (
	"context"

	"github.com/igw-dev/igw/pkg/datastore"
)

// TypedName identifies a plugin instance: its registered type and the
// instance name that profiles reference. Two instances of one type (e.g.
// two prefix scorers with different block sizes) differ by Name.
type TypedName struct {
	// Type is the registered plugin type, e.g. "queue-scorer".
	Type string
	// Name is the instance name; it defaults to Type in configuration.
	Name string
}

// String renders the instance as "name (type)", or just the type when the
// name is the default, the form used in error messages.
func (t TypedName) String() string {
	if t.Name == "" || t.Name == t.Type {
		return t.Type
	}
	return t.Name + " (" + t.Type + ")"
}

// Plugin is what every plugin implements, so the framework can name it in
// errors, logs and metrics. The extension points are separate interfaces; a
// plugin implements the ones it needs.
type Plugin interface {
	TypedName() TypedName
}

// Candidate is one endpoint as seen by one scheduling cycle: the endpoint
// and the state that was loaded once for the whole cycle. Plugins read
// Metrics and InFlight from here, never from the endpoint, so every plugin
// of a cycle sees the same values.
type Candidate struct {
	// Endpoint is the datastore endpoint; its identity fields (Address,
	// Labels, ...) are safe to read.
	Endpoint *datastore.Endpoint
	// Metrics is the endpoint's latest scrape. It is never nil: an endpoint
	// that has not been scraped yet gets an empty snapshot with a zero
	// UpdateTime (it looks idle; HasMetrics tells the difference).
	Metrics *datastore.Metrics
	// HasMetrics is false when the endpoint had no scrape yet.
	HasMetrics bool
	// InFlight is igw's own count of requests sent to the endpoint and not
	// yet completed, fresher than any scrape.
	InFlight int64
}

// Filter removes candidates that must not serve a request (wrong labels,
// wrong role, ...). Filters run before scorers, in profile order.
type Filter interface {
	Plugin
	// Filter returns the candidates to keep. To avoid allocating, it may
	// compact candidates in place and return a prefix of it (the slice is
	// owned by the cycle); it must not append beyond len(candidates).
	Filter(ctx context.Context, req *Request, candidates []Candidate) []Candidate
}

// Scorer rates candidates so the scheduler can prefer the best ones. Scores
// are 0..1 (1 best); the scheduler clamps out-of-range values, treats NaN as
// 0 and applies the profile's weight, so a scorer never needs to know how
// important it is relative to others.
type Scorer interface {
	Plugin
	// Score writes the score of candidates[i] to scores[i]. len(scores) ==
	// len(candidates). Score is called concurrently for different requests
	// and must not allocate per candidate.
	Score(ctx context.Context, req *Request, candidates []Candidate, scores []float64)
}

// Picker chooses, from the filtered candidates and their weighted total
// scores, the endpoint to use and the fallbacks to retry on, in order.
type Picker interface {
	Plugin
	// Pick appends to dst the indices into candidates of at most n distinct
	// candidates, the primary first, and returns dst. candidates is never
	// empty and n >= 1. scores[i] is candidate i's weighted total (>= 0).
	Pick(ctx context.Context, req *Request, candidates []Candidate, scores []float64, n int, dst []int) []int
}

// ProfileHandler decides which scheduling profiles run for a request and
// which profile's choice is the one the request is sent to. A profile
// handler is configured once per scheduler (default: single-profile-handler);
// disaggregated prefill/decode is the case for running several profiles.
type ProfileHandler interface {
	Plugin
	// Pick returns the profiles to run next, given the profiles configured
	// and the results of the ones already run (in run order). Returning
	// none ends the cycle. It must make progress: the scheduler stops after
	// a bounded number of rounds.
	Pick(ctx context.Context, req *Request, profiles []*Profile, results []ProfileResult) []*Profile
	// ProcessResults returns the name of the profile whose choice is the
	// request's primary destination, or an error when the results cannot
	// serve the request.
	ProcessResults(ctx context.Context, req *Request, results []ProfileResult) (string, error)
}

// ProfileValidator is implemented by profile handlers that only work with
// certain profile sets (e.g. exactly one profile); the scheduler calls it at
// build time so a bad configuration fails at load, not on a request.
type ProfileValidator interface {
	ValidateProfiles(names []string) error
}

// PreRequest is a hook called after a decision, when the caller is about to
// send the request to target (the primary, or a fallback on retry). It lets
// a plugin learn from its decisions, e.g. the prefix-cache scorer records
// that target now holds the request's prompt blocks. It runs on the request
// path and must be fast.
type PreRequest interface {
	Plugin
	PreRequest(ctx context.Context, req *Request, result *Result, target *datastore.Endpoint)
}

// ResponseComplete is a hook called when the response from target has been
// fully received (or failed), so a plugin can learn from the outcome.
type ResponseComplete interface {
	Plugin
	ResponseComplete(ctx context.Context, req *Request, resp *Response, target *datastore.Endpoint)
}

// EndpointForgetter is implemented by plugins that keep per-endpoint state
// (the prefix index), so the caller can drop that state when the datastore
// removes an endpoint; otherwise state of dead endpoints would leak.
type EndpointForgetter interface {
	ForgetEndpoint(address string)
}
