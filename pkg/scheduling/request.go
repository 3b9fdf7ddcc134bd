package scheduling

import (
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Request is what the scheduler knows about one inference request. The
// caller (the Director) fills the exported fields once, after parsing the
// body and applying model rewrites; plugins only read them. It also carries
// the request's CycleState, so work derived from the request (e.g. the
// prompt's block hashes) is done once and shared between plugins and
// between Schedule and the PreRequest hook.
//
// A Request is used by one goroutine at a time: Schedule, then PreRequest
// and ResponseComplete, in sequence.
type Request struct {
	// ID is the request id, for logs.
	ID string
	// Model is the model name the client asked for.
	Model string
	// TargetModel is the model name after InferenceModelRewrite, i.e. the
	// name the model server will see; empty means Model.
	TargetModel string
	// LoRAAdapter is the adapter name when the target model is a LoRA
	// adapter (as opposed to a base model), else empty.
	LoRAAdapter string
	// Prompt is the prompt text used for prefix-cache affinity (the
	// concatenated messages of a chat request, the prompt of a completion).
	// It is read, never modified.
	Prompt []byte
	// Kind and Body are the API the request came in through and its body
	// as the client sent it, read-only, for plugins that must see the
	// prompt as the model server will: the precise-prefix-cache-scorer
	// renders a chat's messages with the model's chat template, which the
	// flattened Prompt cannot give. Body may be nil (tests, callers that
	// have only a prompt).
	Kind openai.Kind
	Body []byte
	// Headers are the request headers that plugins may consult (lower-case
	// names), e.g. for session affinity. May be nil.
	Headers map[string]string
	// TTFTObjective and TPOTObjective are the request's latency objectives:
	// time to first token and time per output token (the x-slo-ttft-ms and
	// x-slo-tpot-ms headers, or its InferenceObjective's defaults); 0 means
	// none. Latency-aware scorers prefer endpoints predicted to meet them.
	TTFTObjective, TPOTObjective time.Duration

	// Explain, when set, receives what the cycle did: each candidate's
	// per-scorer scores and the picks (a debug request; see Explanation).
	// Nil on the default path, which then records nothing.
	Explain *Explanation

	state       CycleState
	wantsCached bool // the scheduler has a latency predictor; see WantsCachedPrompt
}

// WantsCachedPrompt reports whether a plugin of this request's scheduler
// reads CachedPromptKey, so a prefix-cache scorer publishes it only when
// someone will read it (it costs an allocation per request).
func (r *Request) WantsCachedPrompt() bool { return r.wantsCached }

// EffectiveModel is the model the server will run: TargetModel if set,
// else Model. Prefix hashes are seeded with it so that two models never
// share cache entries.
func (r *Request) EffectiveModel() string {
	if r.TargetModel != "" {
		return r.TargetModel
	}
	return r.Model
}

// State returns the request's cycle state, where plugins keep what they
// compute once per request.
func (r *Request) State() *CycleState { return &r.state }

// StateKey names an entry of a CycleState. Plugins should derive it from
// their instance name so two instances of one type do not collide.
type StateKey string

type stateEntry struct {
	key StateKey
	val any
}

// CycleState is a small per-request key/value store for data computed once
// and used by several plugins or hooks, in the spirit of the kube-scheduler
// CycleState. The first few entries live inline, so using it does not
// allocate. It is not safe for concurrent use (a request is handled by one
// goroutine at a time).
type CycleState struct {
	inline [6]stateEntry
	n      int
	more   []stateEntry
}

// Read returns the value stored under key.
func (c *CycleState) Read(key StateKey) (any, bool) {
	for i := 0; i < c.n; i++ {
		if c.inline[i].key == key {
			return c.inline[i].val, true
		}
	}
	for i := range c.more {
		if c.more[i].key == key {
			return c.more[i].val, true
		}
	}
	return nil, false
}

// Write stores v under key, replacing any previous value. Store pointers to
// avoid boxing allocations.
func (c *CycleState) Write(key StateKey, v any) {
	for i := 0; i < c.n; i++ {
		if c.inline[i].key == key {
			c.inline[i].val = v
			return
		}
	}
	for i := range c.more {
		if c.more[i].key == key {
			c.more[i].val = v
			return
		}
	}
	if c.n < len(c.inline) {
		c.inline[c.n] = stateEntry{key, v}
		c.n++
		return
	}
	c.more = append(c.more, stateEntry{key, v})
}

// Response is what the caller learned when a proxied response completed;
// it is handed to ResponseComplete hooks.
type Response struct {
	// StatusCode is the HTTP status the model server returned (0 when the
	// request failed before a response).
	StatusCode int
	// PromptTokens, CompletionTokens and CachedTokens come from the usage
	// block when the server reported one (0 otherwise).
	PromptTokens     int
	CompletionTokens int // generated tokens
	CachedTokens     int // prompt tokens served from the prefix cache
	// Err is the transport error, if any.
	Err error
	// FirstByte is the time from the attempt's start (the request handed
	// to the endpoint) to the first response body byte, 0 when none came;
	// Duration the time to the attempt's end. For a response that is not
	// Streamed the first byte comes when the whole answer is ready, so
	// only a streamed FirstByte is a time to first token.
	FirstByte, Duration time.Duration
	Streamed            bool
}
