package bench

import (
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Header names the load generator sets or reads. They are the Gateway API
// Inference Extension's, so the same workload exercises igw and any other
// conformant gateway.
const (
	// HeaderObjective names the InferenceObjective (priority) of a request.
	HeaderObjective = "x-gateway-inference-objective"
	// HeaderSLOTTFT and HeaderSLOTPOT carry a request's latency
	// objectives in milliseconds.
	HeaderSLOTTFT = "x-slo-ttft-ms"
	HeaderSLOTPOT = "x-slo-tpot-ms"
	// HeaderFairnessID names the tenant a request is accounted to for fair
	// queuing.
	HeaderFairnessID = "x-gateway-inference-fairness-id"
	// HeaderEndpointServed is the response header in which a gateway reports
	// the endpoint that served a request; it yields the per-endpoint share.
	HeaderEndpointServed = "x-gateway-destination-endpoint-served"
)

// Request is one request a workload wants sent. Sources build them; the
// Client turns them into an OpenAI streaming request with
// stream_options.include_usage, max_tokens and ignore_eos, so that every
// request generates exactly MaxTokens tokens on servers that honour
// ignore_eos (vLLM, the simulator).
type Request struct {
	// Model is the body's "model": the base model or a LoRA adapter.
	Model string
	// Messages is the chat conversation; when set the request goes to
	// /v1/chat/completions.
	Messages []openai.ChatMessage
	// Prompt is the text prompt, used (with /v1/completions) when Messages
	// is empty.
	Prompt string
	// MaxTokens is the output length asked for.
	MaxTokens int
	// Objective, if set, is sent as HeaderObjective.
	Objective string
	// FairnessID, if set, is sent as HeaderFairnessID.
	FairnessID string
	// TTFTObjective and TPOTObjective, if set, are sent as HeaderSLOTTFT
	// and HeaderSLOTPOT (whole milliseconds).
	TTFTObjective, TPOTObjective time.Duration
	// Group is the shared-prefix group or multi-turn session the request
	// belongs to (-1 for none), kept in results so a report can tell
	// whether requests of a group landed together.
	Group int
	// Turn is the turn of a multi-turn session (0 otherwise).
	Turn int
	// CollectAnswer asks the client to return the generated text, which a
	// multi-turn source appends to the conversation. It costs a JSON decode
	// per token, so other sources leave it off.
	CollectAnswer bool
}

// Source produces a workload's requests. The runner calls Next once per
// arrival, in arrival order, so a source whose order depends only on its
// seed sends the same sequence to every contender of a comparison; it
// calls Complete when a request ends, so conversations can continue with
// the server's own answer. Implementations must be safe for concurrent
// use.
type Source interface {
	// Next returns the request to send now.
	Next() *Request
	// Complete reports how req ended; answer is the generated text when
	// req.CollectAnswer was set and the request succeeded.
	Complete(req *Request, res *RequestResult, answer string)
}

// ErrorKind classifies why a request did not succeed, so summaries can
// separate the server's refusals from the network's failures and from the
// benchmark's own cancellations.
type ErrorKind string

// Error kinds of a RequestResult.
const (
	// ErrNone is a request that streamed to its end.
	ErrNone ErrorKind = ""
	// ErrHTTP is a response with a status other than 200.
	ErrHTTP ErrorKind = "http"
	// ErrTransport is a failure to connect, send or receive headers.
	ErrTransport ErrorKind = "transport"
	// ErrStream is a 200 response whose stream broke off, carried an error
	// event, or ended without [DONE].
	ErrStream ErrorKind = "stream"
	// ErrTimeout is a request that exceeded the per-request timeout.
	ErrTimeout ErrorKind = "timeout"
	// ErrCanceled is a request cut off because the run was cancelled or its
	// drain period ran out; it is counted apart from errors, since the
	// server did nothing wrong.
	ErrCanceled ErrorKind = "canceled"
	// ErrDropped is an arrival that was never sent because the client
	// already had Options.MaxInFlight requests open; it shows the load
	// generator, not the server, was the limit.
	ErrDropped ErrorKind = "dropped"
)

// RequestResult is what one request measured. Offsets are from the start
// of the run and durations are in nanoseconds in JSON, so results can be
// re-summarized (Summarize) without loss.
type RequestResult struct {
	// ID numbers requests in arrival order from 0.
	ID int64 `json:"id"`
	// Stage is the index of the stage in which the request arrived.
	Stage int `json:"stage"`
	// Warmup marks requests that arrived during the warm-up; summaries
	// leave them out.
	Warmup bool `json:"warmup,omitempty"`
	// Group, Turn, Model, Objective and FairnessID are copied from the
	// Request, so results can be broken down by group, adapter or
	// objective.
	Group      int    `json:"group"`
	Turn       int    `json:"turn,omitempty"`
	Model      string `json:"model,omitempty"`
	Objective  string `json:"objective,omitempty"`
	FairnessID string `json:"fairness_id,omitempty"`
	// SLOTTFTMs is the request's time-to-first-token objective (0: none).
	SLOTTFTMs int `json:"slo_ttft_ms,omitempty"`

	// Scheduled is when the arrival process wanted the request sent, Start
	// when it was sent, End when its stream ended; Start − Scheduled is the
	// load generator's own lag.
	Scheduled time.Duration `json:"scheduled_ns"`
	Start     time.Duration `json:"start_ns"`
	End       time.Duration `json:"end_ns"`

	// TTFT is the time from sending to the first SSE event that carries
	// generated text (the role-only first chunk does not count).
	TTFT time.Duration `json:"ttft_ns"`
	// E2E is the time from sending to the end of the stream.
	E2E time.Duration `json:"e2e_ns"`
	// ITL are the gaps between successive content-bearing events.
	ITL []time.Duration `json:"itl_ns,omitempty"`
	// TPOT is (E2E − TTFT)/(OutputTokens − 1): the decode speed a user
	// sees once text flows; 0 with fewer than two output tokens.
	TPOT time.Duration `json:"tpot_ns"`
	// NTPOT is E2E/OutputTokens: latency normalized by output length,
	// comparable across requests of different lengths.
	NTPOT time.Duration `json:"ntpot_ns"`

	// Token counts come from the usage chunk; OutputTokens falls back to
	// the number of content events when the server sent no usage.
	InputTokens   int  `json:"input_tokens"`
	OutputTokens  int  `json:"output_tokens"`
	CachedTokens  int  `json:"cached_tokens"`
	UsageReported bool `json:"usage_reported"`

	// Status is the HTTP status (0 if no response arrived).
	Status int `json:"status"`
	// ErrorKind is why the request failed; ErrNone if it succeeded.
	ErrorKind ErrorKind `json:"error_kind,omitempty"`
	// TransportError classifies ErrTransport failures (refused, reset,
	// eof, dns, timeout, other).
	TransportError string `json:"transport_error,omitempty"`
	// Error is the failure's message (the server's, when it sent one).
	Error string `json:"error,omitempty"`
	// Endpoint is the HeaderEndpointServed value, if the target sent one.
	Endpoint string `json:"endpoint,omitempty"`
}

// OK reports whether the request succeeded.
func (r *RequestResult) OK() bool { return r.ErrorKind == ErrNone }
