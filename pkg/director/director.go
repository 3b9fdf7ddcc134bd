// Package director is igw's request lifecycle, independent of transport.
// Both data planes — the standalone HTTP proxy and the Envoy ext_proc
// picker — hand it the request's method, path, headers and body (Begin) and
// get back an Exchange or a Reply. Begin parses the body once and runs the
// route, the request guard, authentication, the admission policy (token
// quotas), model rewrite, flow control and scheduling; the Exchange then
// observes the response (first byte, usage, the client's model name
// restored) and completes the request (in-flight release, scheduler hooks,
// metrics, quota settlement). The planes only map bytes and headers, so a
// behaviour is written once and is the same in both.
package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/igw-dev/igw/internal/bufpool"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director/outlier"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Dropped-request reasons, sent in the x-gateway-request-dropped-reason
// header (REFERENCE §2).
const (
	ReasonSaturated   = flowcontrol.ReasonSaturated
	ReasonNoEndpoints = flowcontrol.ReasonNoEndpoints
	ReasonTTLExpired  = flowcontrol.ReasonTTLExpired
	ReasonQueueFull   = flowcontrol.ReasonQueueFull
	// ReasonSLOUnattainable is a sheddable request with a latency
	// objective that no endpoint is predicted to meet.
	ReasonSLOUnattainable = "rejected-slo-unattainable"
)

// DroppedReasonHeader carries a Rejection's reason to the client.
const DroppedReasonHeader = "x-gateway-request-dropped-reason"

// Rejection is a request the Director refuses, with the status and reason
// every data plane reports the same way.
type Rejection struct {
	Status  int
	Reason  string
	Message string
	// RetryAfter is when the client may try again, sent as Retry-After
	// with a 429 (0: one second).
	RetryAfter time.Duration
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Message }

// OpenAI renders the rejection as an OpenAI-style error.
func (r *Rejection) OpenAI() *openai.Error {
	typ := openai.ErrTypeUnavailable
	if r.Status == http.StatusTooManyRequests {
		typ = openai.ErrTypeRateLimit
	}
	return openai.NewError(r.Status, typ, r.Message)
}

// Request is one inference request as a data plane hands it over.
type Request struct {
	// ID identifies the request in logs.
	ID string
	// Pool is the namespaced name of the InferencePool the route chose.
	Pool string
	// Parsed is the parsed body; Body the bytes it was parsed from.
	Parsed *openai.Parsed
	Body   []byte
	// Objective is the x-gateway-inference-objective header value.
	Objective string
	// FairnessID is the x-gateway-inference-fairness-id header value: the
	// flow (tenant) the request queues in when the pool is saturated.
	FairnessID string
	// Headers are request headers scheduling plugins may read (lower-case).
	Headers map[string]string
	// Subset, when not nil, restricts candidates to these addresses (the
	// gateway's subset hint); an empty non-nil slice means no candidates.
	Subset []string
	// TTFTObjective and TPOTObjective are the client's latency objectives
	// (x-slo-ttft-ms, x-slo-tpot-ms); 0 takes the InferenceObjective's.
	TTFTObjective, TPOTObjective time.Duration
	// Routed reports that a route matched the model, which makes it a
	// known model for metric labels (UnknownModel).
	Routed bool
	// Explain asks the scheduler to record the decision
	// (Decision.Explanation); Begin sets it for a debug request when the
	// Director explains decisions.
	Explain bool
}

// Director runs the request lifecycle. Its scheduler and saturation
// detector can be swapped at run time (configuration reload) without
// disturbing requests in flight.
type Director struct {
	store      *datastore.Store
	scheduler  atomic.Pointer[scheduling.Scheduler]
	saturation atomic.Pointer[flowcontrol.SaturationDetector]
	policy     atomic.Pointer[Policy]
	maxAge     time.Duration
	obs        Observer
	explain    bool
	tracer     trace.Tracer // nil: tracing off
	decisions  func(pool string, ex *scheduling.Explanation)
	// decisionsWanted gates the sampling (Options.DecisionsWanted).
	decisionsWanted func() bool
	every           uint64 // one decision in every is explained for decisions
	decided         atomic.Uint64
	log             *slog.Logger
	now             func() time.Time
	started         time.Time
	requestIDs      atomic.Uint64
	prompts         bufpool.Pool // prompt buffers, see Begin

	knownMu sync.Mutex
	known   map[string]bool // endpoint addresses the scheduler may hold state for

	flowCfg      flowcontrol.Config
	flowObserver func(pool string) flowcontrol.Observer
	flowMu       sync.Mutex
	flows        map[string]*flowcontrol.Controller // by pool

	poolsMu sync.Mutex
	pools   map[string]*poolState // outlier detection and retry budget, by pool
}

// staleFallbackAge bounds how old metrics may be when no endpoint of a
// pool has fresh ones. All of them going stale at once means the scraper is
// behind (usually an overloaded gateway), not that every server died; dead
// servers fail their scrapes and stop being ready.
const staleFallbackAge = 5 * time.Second

// Observer receives what the lifecycle does, for metrics (package
// telemetry implements it). A nil Observer is allowed.
type Observer interface {
	// Scheduled is called after every scheduling cycle.
	Scheduled(pool string, ep *datastore.Endpoint, took time.Duration, err error)
	// Rejected is called for every Rejection of admission or scheduling.
	Rejected(pool, model string, r *Rejection)
	// RequestDone is called once per request with what it came to: the
	// status the client got, the times, sizes and usage (Completion).
	RequestDone(c *Completion)
	// Tokens and TokenUsage record a response's usage.
	Tokens(model, pool string, input, output, cached int)
	TokenUsage(tenant, model, operation string, input, output int)
	// AuthRejected counts a refused credential by reason.
	AuthRejected(reason string)
	// Retried counts a retry on another endpoint; InFlight tracks requests
	// on their way to a model server, by pool and model (as a metric
	// label: see UnknownModel).
	Retried(pool string)
	InFlight(pool, model string, delta float64)
	// Queued and Dequeued bracket a request's stay in its pool's
	// admission (flow control), with how it left (QueueDispatched, ...)
	// and after how long; a request with headroom passes straight through.
	Queued(e *FlowEntry)
	Dequeued(e *FlowEntry, outcome string, waited time.Duration)
	// AttemptTimedOut counts an attempt abandoned in phase "connect" or
	// "first_byte"; ResponseBroken a response the model server's side cut
	// before its end.
	AttemptTimedOut(pool, phase string)
	ResponseBroken(pool string)
	// RetryDenied counts a retry the pool's retry budget refused.
	RetryDenied(pool string)
	// Readmitted counts a request sent back through admission after a
	// model server refused it for lack of room.
	Readmitted(pool string)
	// LatencyObjective counts a streamed response with a latency
	// objective ("ttft" or "tpot") as met or missed.
	LatencyObjective(pool, objective string, met bool)
	// Ejected and EjectedEndpoints report outlier detection.
	outlier.Observer
}

// nopObserver is the Observer of a Director built without one.
type nopObserver struct{}

func (nopObserver) Scheduled(string, *datastore.Endpoint, time.Duration, error) {}
func (nopObserver) Rejected(string, string, *Rejection)                         {}
func (nopObserver) RequestDone(*Completion)                                     {}
func (nopObserver) Queued(*FlowEntry)                                           {}
func (nopObserver) Dequeued(*FlowEntry, string, time.Duration)                  {}
func (nopObserver) Tokens(string, string, int, int, int)                        {}
func (nopObserver) TokenUsage(string, string, string, int, int)                 {}
func (nopObserver) AuthRejected(string)                                         {}
func (nopObserver) Retried(string)                                              {}
func (nopObserver) InFlight(string, string, float64)                            {}
func (nopObserver) AttemptTimedOut(string, string)                              {}
func (nopObserver) ResponseBroken(string)                                       {}
func (nopObserver) RetryDenied(string)                                          {}
func (nopObserver) Readmitted(string)                                           {}
func (nopObserver) LatencyObjective(string, string, bool)                       {}
func (nopObserver) Ejected(string, string)                                      {}
func (nopObserver) EjectedEndpoints(string, int)                                {}

// Options configures a Director.
type Options struct {
	Store      *datastore.Store
	Scheduler  *scheduling.Scheduler
	Saturation *flowcontrol.SaturationDetector
	// MaxAge is how old an endpoint's metrics may be for it to be a
	// candidate (default datastore.DefaultMaxAge).
	MaxAge   time.Duration
	Observer Observer
	// FlowControl bounds the admission queues (zero: flowcontrol's
	// defaults); FlowObserver, if set, gives each pool's flow controller
	// its metrics.
	FlowControl  flowcontrol.Config
	FlowObserver func(pool string) flowcontrol.Observer
	// Policy is the request policies Begin applies (nil: no routes, no
	// authentication, no admission policy); SetPolicy replaces it.
	Policy *Policy
	// Logger receives outlier detection's ejections and returns (nil: no
	// logs).
	Logger *slog.Logger
	// ExplainDecisions lets a request ask for its scheduling decision
	// explained (HeaderDebugDecision: 1, answered in HeaderDecision). Off
	// by default: the answer shows the pool's endpoints, their addresses
	// and how loaded they are, which clients should not see unless the
	// operator chose so.
	ExplainDecisions bool
	// Tracer, when set, traces each request the sampler keeps: a span for
	// the request and its steps, W3C traceparent accepted from the client
	// (or Envoy) and sent to the model server (trace.go). nil: no tracing,
	// and no cost.
	Tracer trace.Tracer
	// Decisions, when set, receives one scheduling decision in
	// DecisionsEvery explained (the candidates' scores), for the live
	// dashboard. It must copy what it keeps: the explanation may be trimmed
	// and answered to the client afterwards.
	Decisions      func(pool string, ex *scheduling.Explanation)
	DecisionsEvery int
	// DecisionsWanted, when set, says whether anyone looks at the sampled
	// decisions now (the dashboard was read recently): while nobody does,
	// no decision is explained for them. nil: always.
	DecisionsWanted func() bool
}

// New builds a Director.
func New(o Options) (*Director, error) {
	if o.Store == nil || o.Scheduler == nil {
		return nil, errors.New("director: a store and a scheduler are required")
	}
	if o.Saturation == nil {
		sd, err := flowcontrol.NewSaturationDetector(flowcontrol.DefaultSaturationConfig())
		if err != nil {
			return nil, err
		}
		o.Saturation = sd
	}
	if o.MaxAge <= 0 {
		o.MaxAge = datastore.DefaultMaxAge
	}
	if o.FlowControl == (flowcontrol.Config{}) {
		o.FlowControl = flowcontrol.DefaultConfig()
	}
	if err := o.FlowControl.Validate(); err != nil {
		return nil, fmt.Errorf("director: flow control: %w", err)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Policy == nil {
		o.Policy = &Policy{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Director{store: o.Store, maxAge: o.MaxAge, obs: o.Observer, explain: o.ExplainDecisions, tracer: o.Tracer, decisions: o.Decisions, decisionsWanted: o.DecisionsWanted, every: uint64(max(1, o.DecisionsEvery)), log: o.Logger, now: time.Now, started: time.Now(),
		flowCfg: o.FlowControl, flowObserver: o.FlowObserver, flows: map[string]*flowcontrol.Controller{},
		known: map[string]bool{}, pools: map[string]*poolState{}}
	d.scheduler.Store(o.Scheduler)
	d.saturation.Store(o.Saturation)
	d.policy.Store(o.Policy)
	return d, nil
}

// SetPolicy swaps the request policies (a new configuration). Requests
// already begun finish under the Policy they started with; outlier
// detection takes the new pool settings at once, keeping what it knows.
func (d *Director) SetPolicy(p *Policy) {
	d.policy.Store(p)
	d.resilienceChanged(p)
}

// Policy is the request policies in force.
func (d *Director) Policy() *Policy { return d.policy.Load() }

// SetScheduler swaps the scheduler (a new EndpointPickerConfig). Requests
// already scheduled finish their hooks on the scheduler that chose them.
func (d *Director) SetScheduler(s *scheduling.Scheduler) { d.scheduler.Store(s) }

// SetSaturation swaps the saturation thresholds.
func (d *Director) SetSaturation(s *flowcontrol.SaturationDetector) { d.saturation.Store(s) }

// EndpointsChanged takes the store's whole endpoint set after a change
// (wire it into the store's change callback) and drops the scheduler's
// and outlier detection's state (e.g. prefix-cache index entries) for
// endpoints that left.
func (d *Director) EndpointsChanged(all []*datastore.Endpoint) {
	d.poolsChanged(all)
	d.knownMu.Lock()
	defer d.knownMu.Unlock()
	now := make(map[string]bool, len(all))
	for _, e := range all {
		now[e.Address] = true
	}
	sched := d.scheduler.Load()
	for addr := range d.known {
		if !now[addr] {
			sched.ForgetEndpoint(addr)
		}
	}
	d.known = now
}

// Store is the datastore the Director reads.
func (d *Director) Store() *datastore.Store { return d.store }

// Decision is where a request goes: endpoints in order of preference (the
// primary, then fallbacks for retries before the first response byte), the
// model the server will see, and the body to send.
type Decision struct {
	Endpoints []*datastore.Endpoint
	// Model is what the client asked for; TargetModel what the server sees
	// after rewrites.
	Model, TargetModel string
	// Body is the request body to forward (the original when the model was
	// not rewritten).
	Body     []byte
	Priority int32
	Pool     string
	// TTFTObjective and TPOTObjective are the request's latency
	// objectives (0: none), from its headers or its InferenceObjective.
	TTFTObjective, TPOTObjective time.Duration
	// Explanation is the scheduling cycle explained, when the request
	// asked (Request.Explain); nil otherwise.
	Explanation *scheduling.Explanation
	// Queued is how long admission held the request (0 when the pool had
	// room): with the time to first token it tells an operator whether a
	// slow request waited in igw or at the model server.
	Queued time.Duration

	sreq    *scheduling.Request
	res     *scheduling.Result
	sched   *scheduling.Scheduler
	flow    *flowcontrol.Controller
	det     *outlier.Detector
	ps      *poolState // the pool's outlier detector and retry budget
	started sync.Once  // tells flow control the request is in flight
}

// Decide rewrites the model, admits the request (flow control: straight
// through while the pool has headroom, else queued by priority and
// fairness, sheddable requests refused) and schedules it over the pool's
// endpoints. Errors are *Rejection or the context's error (the client
// left while queued).
func (d *Director) Decide(ctx context.Context, req *Request) (*Decision, error) {
	model := req.Parsed.Model
	if d.store.Pool(req.Pool) == nil {
		return nil, d.reject(req.Pool, model, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonNoEndpoints,
			Message: fmt.Sprintf("no InferencePool %q", req.Pool)})
	}
	target, _ := d.store.Rewrite(req.Pool, model, rand.Float64())
	priority := d.store.Priority(req.Pool, req.Objective)
	slo := d.store.LatencyObjective(req.Pool, req.Objective)
	if req.TTFTObjective > 0 {
		slo.TTFT = req.TTFTObjective
	}
	if req.TPOTObjective > 0 {
		slo.TPOT = req.TPOTObjective
	}
	arrived := time.Now()
	var deadline time.Time
	if slo.TTFT > 0 {
		deadline = arrived.Add(slo.TTFT)
	}

	flow := d.flowController(req.Pool)
	entry := &FlowEntry{Pool: req.Pool, FairnessID: req.FairnessID, Priority: priority, MetricModel: model, MetricTargetModel: target}
	if !d.modelKnown(req.Routed, req.Pool, model) {
		entry.MetricModel = UnknownModel
		if target == model {
			entry.MetricTargetModel = UnknownModel
		}
	}
	d.obs.Queued(entry)
	err := flow.Admit(ctx, flowcontrol.Request{FairnessID: req.FairnessID, Priority: priority, Bytes: int64(len(req.Body)),
		Deadline: deadline})
	queued := time.Since(arrived)
	d.obs.Dequeued(entry, queueOutcome(err), queued)
	var traced *requestTrace
	if d.tracer != nil {
		if traced = tracedStep(ctx); traced != nil {
			traced.admission(arrived, entry, queueOutcome(err))
		}
	}
	if err != nil {
		var rej *flowcontrol.Rejection
		if !errors.As(err, &rej) {
			return nil, err
		}
		return nil, d.reject(req.Pool, model, admissionRejection(rej))
	}
	// Until the request is in flight on an endpoint (Decision.Start), the
	// pool's load does not show it; flow control holds its queue until
	// then. Every path out of here that does not hand over says so.
	handedOver := false
	defer func() {
		if !handedOver {
			flow.Started()
		}
	}()

	pool := d.store.Pool(req.Pool) // as it is now, after any wait
	if pool == nil {
		return nil, d.reject(req.Pool, model, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonNoEndpoints,
			Message: fmt.Sprintf("no InferencePool %q", req.Pool)})
	}
	now := time.Now()
	ps := d.poolState(req.Pool)
	det := ps.det
	isUrgent := urgent(priority, slo.TTFT > 0)
	if isUrgent {
		ps.urgentAt.Store(now.UnixNano())
	}
	candidates := healthy(det, d.candidates(pool, req.Subset, target, now))
	if len(candidates) == 0 {
		return nil, d.reject(req.Pool, model, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonNoEndpoints,
			Message: fmt.Sprintf("no ready model server in pool %q", req.Pool)})
	}
	switch {
	case isUrgent:
		candidates = d.withHeadroom(candidates, now)
	case priority < 0:
		if candidates = d.withRoomForSheddable(candidates); len(candidates) == 0 {
			return nil, d.reject(req.Pool, model, &Rejection{Status: http.StatusTooManyRequests, Reason: ReasonSaturated,
				Message: "the model servers keep their last free slots for requests that are not sheddable; retry later"})
		}
	}

	sched := d.scheduler.Load()
	sreq := &scheduling.Request{
		ID:          req.ID,
		Model:       model,
		TargetModel: target,
		LoRAAdapter: adapterOf(target, candidates),
		Prompt:      req.Parsed.Prompt,
		Kind:        req.Parsed.Kind,
		Body:        req.Body,
		Headers:     req.Headers,

		TTFTObjective: slo.TTFT,
		TPOTObjective: slo.TPOT,
	}
	sampled := d.decisions != nil && d.decided.Add(1)%d.every == 0 && (d.decisionsWanted == nil || d.decisionsWanted())
	if req.Explain || traced != nil || sampled {
		// A traced request's scheduling span carries the best
		// candidates' scores; only a request that asked gets them back.
		sreq.Explain = &scheduling.Explanation{}
	}
	start := time.Now()
	res, err := sched.Schedule(ctx, sreq, candidates)
	var primary *datastore.Endpoint
	if err == nil {
		primary = res.Primary()
	}
	d.obs.Scheduled(req.Pool, primary, time.Since(start), err)
	if sampled && err == nil {
		d.decisions(req.Pool, sreq.Explain)
	}
	if traced != nil {
		addr := ""
		if primary != nil {
			addr = primary.Address
		}
		traced.schedule(start, addr, sreq.Explain, err)
	}
	if !req.Explain {
		sreq.Explain = nil // scores for the trace or the dashboard only
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, d.reject(req.Pool, model, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonNoEndpoints, Message: err.Error()})
	}
	if rej := d.unattainable(sched, sreq, res.Primary(), priority, deadline); rej != nil {
		return nil, d.reject(req.Pool, model, rej)
	}
	body := req.Body
	if target != model {
		body = req.Parsed.WithModel(req.Body, target)
	}
	handedOver = true
	return &Decision{
		Endpoints: distinct(res.Endpoints()), Model: model, TargetModel: target, Body: body,
		Priority: priority, Pool: req.Pool, TTFTObjective: slo.TTFT, TPOTObjective: slo.TPOT, Explanation: sreq.Explain, Queued: queued, sreq: sreq, res: res, sched: sched, flow: flow, det: det, ps: ps,
	}, nil
}

// unattainable refuses a sheddable request whose time-to-first-token
// deadline the scheduler's latency predictor says the chosen endpoint —
// the best there is — will miss: it would take a slot, delay others and
// miss anyway. Retry-After is how late the prediction is, when the load
// that makes it late may have drained. Requests of priority ≥ 0 are
// routed anyway (their admission already waited for headroom, and in a
// deadline ordering went first); so is any request when nothing can
// predict yet.
func (d *Director) unattainable(sched *scheduling.Scheduler, sreq *scheduling.Request, ep *datastore.Endpoint, priority int32, deadline time.Time) *Rejection {
	if priority >= 0 || deadline.IsZero() {
		return nil
	}
	p, ok := sched.PredictLatency(sreq, ep)
	if !ok {
		return nil
	}
	late := time.Now().Add(p.TTFT).Sub(deadline)
	if late <= 0 {
		return nil
	}
	return &Rejection{Status: http.StatusTooManyRequests, Reason: ReasonSLOUnattainable, RetryAfter: late,
		Message: fmt.Sprintf("the request's time-to-first-token objective cannot be met: the fastest model server is predicted to take %v; retry later",
			p.TTFT.Round(time.Millisecond))}
}

// candidates are the endpoints of pool a request may go to: ready with
// fresh metrics (or, when no endpoint has fresh metrics, with recent ones),
// within the subset hint, and — when the servers say which models they
// serve — serving the target model, so a LoRA adapter loaded on some
// replicas only is never sent to the others.
func (d *Director) candidates(pool *datastore.Pool, subset []string, model string, now time.Time) []*datastore.Endpoint {
	eps := datastore.Candidates(make([]*datastore.Endpoint, 0, len(pool.Endpoints)), pool.Endpoints, now, d.maxAge)
	if len(eps) == 0 {
		eps = datastore.Candidates(eps, pool.Endpoints, now, max(d.maxAge, staleFallbackAge))
	}
	if subset != nil {
		eps = slices.DeleteFunc(eps, func(e *datastore.Endpoint) bool { return !slices.Contains(subset, e.Address) })
	}
	served := false
	for _, e := range eps {
		if slices.Contains(e.ServedModels(), model) {
			served = true
			break
		}
	}
	if served { // drop only servers known not to serve it
		eps = slices.DeleteFunc(eps, func(e *datastore.Endpoint) bool {
			list := e.ServedModels()
			return list != nil && !slices.Contains(list, model)
		})
	}
	return eps
}

// flowController is the pool's admission controller, made on first use.
func (d *Director) flowController(pool string) *flowcontrol.Controller {
	d.flowMu.Lock()
	defer d.flowMu.Unlock()
	if c := d.flows[pool]; c != nil {
		return c
	}
	var obs flowcontrol.Observer
	if d.flowObserver != nil {
		obs = d.flowObserver(pool)
	}
	ps := d.poolState(pool)
	c, err := flowcontrol.NewController(d.flowCfg, func(r *flowcontrol.Request) (bool, bool) { return d.headroom(pool, ps, r) }, obs)
	if err != nil { // the config was validated in New
		panic(fmt.Sprintf("director: flow control: %v", err))
	}
	d.flows[pool] = c
	return c
}

// withHeadroom keeps the candidates with a free slot (FreeSlot), when some
// have one, else those that are not saturated, when some are and some are
// not, for an urgent request (above the default priority, or with a
// time-to-first-token objective): released
// from the admission queue, it must not wait at a server behind requests
// admitted before it. Requests of the default priority and sheddable ones
// keep every candidate, so their affinities (a cached prefix, a loaded
// adapter) hold when the servers that have them are the busy ones; the
// prefix scorer's load bound and its consistent spill keep a hot prefix
// from growing one server's queue far past the others'. Filtering them too
// spread every hot prefix over the whole pool under overload: on
// shared-prefix-overload.yaml, 32 req/s with 29% prefix hits instead of
// 48–56 req/s with 67% (docs/performance.md). When no candidate has
// headroom (the state changed since admission) every candidate stays.
func (d *Director) withHeadroom(eps []*datastore.Endpoint, now time.Time) []*datastore.Endpoint {
	sat := d.saturation.Load()
	slots := 0
	for _, e := range eps {
		if sat.FreeSlot(e) && !sat.EndpointSaturated(e, now) {
			slots++
		}
	}
	if slots > 0 && slots < len(eps) { // where it starts at once, if anywhere
		return slices.DeleteFunc(eps, func(e *datastore.Endpoint) bool { return !sat.FreeSlot(e) || sat.EndpointSaturated(e, now) })
	}
	free := 0
	for _, e := range eps {
		if !sat.EndpointSaturated(e, now) {
			free++
		}
	}
	if free == 0 || free == len(eps) {
		return eps
	}
	return slices.DeleteFunc(eps, func(e *datastore.Endpoint) bool { return sat.EndpointSaturated(e, now) })
}

// withRoomForSheddable keeps the candidates a sheddable request may take a
// slot on: each endpoint's last ReservedSlots running slots (at most a
// quarter of its learned limit) stay free for
// requests of priority ≥ 0, which would otherwise wait for a sheddable
// batch to drain (with priority 10 at half the fleet's capacity and the
// fleet at twice it, priority-10 p90 TTFT fell from 24x its idle value to
// 3.5x; docs/performance.md). No candidate left: the request is shed.
func (d *Director) withRoomForSheddable(eps []*datastore.Endpoint) []*datastore.Endpoint {
	sat := d.saturation.Load()
	if sat == nil {
		return eps
	}
	return slices.DeleteFunc(eps, func(e *datastore.Endpoint) bool { return !sat.RoomForSheddable(e) })
}

// headroom reports whether some endpoint of pool can take r now (nil:
// any request), and whether the pool has a usable endpoint at all (ready,
// with metrics no older than the stale fallback). An endpoint can take a
// request when it is not saturated; a sheddable request, or one of the
// default priority without a latency objective while the pool has had
// urgent ones (ps.reserving), also needs a slot beyond the reserved ones.
// It allocates nothing and takes no lock: a queue polls it.
func (d *Director) headroom(pool string, ps *poolState, r *flowcontrol.Request) (ok, hasEndpoints bool) {
	p := d.store.Pool(pool)
	if p == nil {
		return false, false
	}
	now, sat := time.Now(), d.saturation.Load()
	keep := r != nil && (r.Priority < 0 || !urgent(r.Priority, !r.Deadline.IsZero()) && ps.reserving(now))
	usable := max(d.maxAge, staleFallbackAge)
	for _, e := range p.Endpoints {
		if !datastore.IsCandidate(e, now, usable) {
			continue
		}
		hasEndpoints = true
		if !sat.EndpointSaturated(e, now) && (!keep || sat.RoomForSheddable(e)) {
			return true, true
		}
	}
	return false, hasEndpoints
}

// urgent requests are those the reserved slots are for: above the default
// priority, or with a time-to-first-token objective.
func urgent(priority int32, hasTTFTObjective bool) bool { return priority > 0 || hasTTFTObjective }

// reserveWindow is how long after an urgent request requests of the
// default priority keep leaving the reserved slots free: long enough to
// span the gaps of a steady urgent stream, short enough that a pool
// without urgent traffic uses every slot.
const reserveWindow = 10 * time.Second

// reserving reports whether the pool had an urgent request within
// reserveWindow of now.
func (ps *poolState) reserving(now time.Time) bool {
	return now.UnixNano()-ps.urgentAt.Load() < int64(reserveWindow)
}

// admissionRejection maps flow control's refusal to the status clients
// see: 503 when the pool has no endpoint at all, else 429.
func admissionRejection(r *flowcontrol.Rejection) *Rejection {
	rej := &Rejection{Status: http.StatusTooManyRequests, Reason: r.Reason}
	switch r.Reason {
	case flowcontrol.ReasonSaturated:
		rej.Message = "the model servers are saturated and the request's objective is sheddable; retry later"
	case flowcontrol.ReasonQueueFull:
		rej.Message = "the model servers are saturated and the admission queue of this priority is full; retry later"
	default:
		rej.Message = fmt.Sprintf("the request waited %v for the model servers to have room; retry later", r.Waited.Round(time.Millisecond))
	}
	if r.NoEndpoints {
		rej.Status, rej.Reason = http.StatusServiceUnavailable, ReasonNoEndpoints
		rej.Message = "no ready model server in the pool"
	}
	return rej
}

// queueOutcome names how a request left flow control (err is Admit's).
func queueOutcome(err error) string {
	var rej *flowcontrol.Rejection
	switch {
	case err == nil:
		return QueueDispatched
	case errors.As(err, &rej) && rej.Reason == flowcontrol.ReasonTTLExpired:
		return QueueEvictedTTL
	case errors.As(err, &rej) && (rej.Reason == flowcontrol.ReasonQueueFull || rej.Reason == flowcontrol.ReasonSaturated):
		return QueueRejectedCapacity
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return QueueEvictedCanceled
	}
	return QueueRejectedOther
}

func (d *Director) reject(pool, model string, r *Rejection) *Rejection {
	d.obs.Rejected(pool, model, r)
	return r
}

// adapterOf returns model if the servers know it as a LoRA adapter rather
// than a base model, else "". A model a server reports as its base model
// (metrics' model_name) is a base model; one a server reports as an active
// or waiting adapter is an adapter; a model no server reports at all is an
// adapter when the servers do report their base models (it is not one of
// them), and otherwise treated as a base model.
func adapterOf(model string, eps []*datastore.Endpoint) string {
	knowBases := false
	for _, e := range eps {
		m := e.Metrics()
		if m == nil {
			continue
		}
		if slices.Contains(m.BaseModels, model) {
			return ""
		}
		if _, ok := m.ActiveAdapters[model]; ok {
			return model
		}
		if _, ok := m.WaitingAdapters[model]; ok {
			return model
		}
		knowBases = knowBases || len(m.BaseModels) > 0
	}
	if knowBases {
		return model
	}
	return ""
}

// Attempt is one try of a Decision on one endpoint.
type Attempt struct {
	dec       *Decision
	ep        *datastore.Endpoint
	probe     bool // the half-open endpoint's probe (outlier detection)
	start     time.Time
	firstByte time.Duration // 0 until the first response body byte
	refusal   bool          // noteRefusal ran
	reported  atomic.Bool
	done      atomic.Bool
}

// Start begins sending the request to ep (the primary or a fallback): the
// endpoint's in-flight count rises and the scheduler's pre-request hooks run
// (e.g. the prefix index learns which prompt blocks ep now holds).
func (dec *Decision) Start(ctx context.Context, ep *datastore.Endpoint) *Attempt {
	ep.AddInFlight(1)
	if dec.flow != nil {
		dec.started.Do(dec.flow.Started)
	}
	dec.sched.PreRequest(ctx, dec.sreq, dec.res, ep)
	a := &Attempt{dec: dec, ep: ep, start: time.Now()}
	if dec.det != nil {
		a.probe = dec.det.Start(ep.Address)
	}
	return a
}

// Report tells outlier detection what the attempt showed about its
// endpoint; only the first report counts. Finish reports an attempt not
// reported before as Abandoned.
func (a *Attempt) Report(o outlier.Outcome) {
	if a.dec.det == nil || !a.reported.CompareAndSwap(false, true) {
		return
	}
	a.dec.det.Done(a.ep.Address, o, a.probe)
}

// noteRefusal tells the endpoint it refused the request for lack of room
// when the status says so (429, 500, 503) and it held other requests
// (see datastore.Endpoint.NoteRefusal); an idle server's 500 is a fault
// for outlier detection, not a ceiling. Each attempt notes at most once.
func (a *Attempt) noteRefusal(status int) {
	if a.refusal || !isRefusalStatus(status) {
		return
	}
	a.refusal = true
	if refusedForRoom(a.ep, status) {
		a.ep.NoteRefusal(time.Now())
	}
}

// isRefusalStatus: the statuses engines refuse work with when full.
func isRefusalStatus(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusInternalServerError || status == http.StatusServiceUnavailable
}

// refusedForRoom reports whether ep answering status is a refusal for lack
// of room: a refusal status from a server that holds other requests (this
// one counted). The same status from an idle server is a fault.
func refusedForRoom(ep *datastore.Endpoint, status int) bool {
	return isRefusalStatus(status) && ep.Busy() > 1
}

// Endpoint is where the attempt went.
func (a *Attempt) Endpoint() *datastore.Endpoint { return a.ep }

// Finish ends the attempt with what the response showed; it is idempotent.
func (a *Attempt) Finish(ctx context.Context, resp scheduling.Response) {
	if !a.done.CompareAndSwap(false, true) {
		return
	}
	a.ep.AddInFlight(-1)
	a.Report(outlier.Abandoned)
	if resp.Duration == 0 {
		resp.Duration = time.Since(a.start)
	}
	if resp.FirstByte == 0 {
		resp.FirstByte = a.firstByte
	}
	a.dec.sched.ResponseComplete(ctx, a.dec.sreq, &resp, a.ep)
	if a.dec.flow != nil {
		a.dec.flow.Kick() // a slot may have opened for a queued request
	}
}
