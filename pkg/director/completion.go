package director

import (
	"slices"
	"strconv"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

// UnknownModel is the model label of metrics for a model name that no
// route and no pool knows: what a client writes in "model" is unbounded,
// and one series per made-up name would grow a gateway's /metrics (and
// every Prometheus scraping it) without limit. The access log keeps the
// name as sent.
const UnknownModel = "unknown"

// Completion is what one request came to, reported once to the
// Observer's RequestDone: everything metrics and the access log need, so
// both read the same facts instead of each following the lifecycle.
type Completion struct {
	// ID is the request id (x-request-id, or the Director's counter).
	ID string
	// Model is the model the client named ("" when it named none);
	// MetricModel is the same, folded to UnknownModel when no route or
	// pool knows it, the value for metric labels. TargetModel is the
	// model the server saw after rewrites (folded the same way in
	// MetricTargetModel).
	Model, MetricModel             string
	TargetModel, MetricTargetModel string
	// Pool is the pool (namespace/name) or URL host the request went to.
	Pool string
	// Objective and Tenant are the InferenceObjective and the fairness id
	// (the authenticated tenant, or the client's header) it ran under.
	Objective, Tenant string
	// Endpoint is the address of the last attempt ("" when none).
	Endpoint string
	// Status is the status the client got (0: the response never
	// started); Reason the x-gateway-request-dropped-reason of a refusal.
	Status int
	Reason string
	// FromServer reports that Status is a model server's answer, not a
	// refusal of the gateway.
	FromServer bool
	// Took is the whole time; TTFT the time to the first token (0: none);
	// Queued the part of both spent in admission (Decision.Queued).
	Took, TTFT, Queued time.Duration
	// RequestBytes and ResponseBytes are the body sizes received from
	// the client and sent back.
	RequestBytes, ResponseBytes int64
	// HasUsage reports that the response's usage was observed; the token
	// counts are the model server's.
	HasUsage                                bool
	InputTokens, OutputTokens, CachedTokens int
	// Retries is how many further endpoints were tried; Streamed whether
	// the response was an event stream.
	Retries  int
	Streamed bool
}

// completion builds the request's Completion at its end.
func (x *Exchange) completion(took time.Duration, inTok, outTok, cached int) *Completion {
	c := &Completion{
		ID: x.requestID(), Model: x.Model, TargetModel: x.TargetModel(), Pool: x.Pool(),
		Endpoint: x.served, Status: x.status, Reason: x.reason, FromServer: x.obs != nil || x.wrap != nil,
		Took: took, TTFT: x.ttft, RequestBytes: int64(len(x.in.Body)), ResponseBytes: x.respBytes,
		HasUsage: x.obs != nil, InputTokens: inTok, OutputTokens: outTok, CachedTokens: cached,
		Retries: x.retries, Streamed: x.stream,
	}
	if x.Decision != nil {
		c.Queued = x.Decision.Queued
	}
	if x.dreq != nil {
		c.Objective, c.Tenant = x.dreq.Objective, x.dreq.FairnessID
	} else if x.in.Header != nil {
		c.Objective, c.Tenant = x.in.Header.Get(HeaderInferenceObjective), x.in.Header.Get(HeaderInferenceFairnessID)
	}
	c.MetricModel, c.MetricTargetModel = x.metricModels()
	return c
}

// metricModels are the request's model and target model as metric
// labels, computed once per request (InFlight and RequestDone share
// them).
func (x *Exchange) metricModels() (model, target string) {
	if !x.labelled {
		x.labelled = true
		x.mModel, x.mTarget = x.Model, x.TargetModel()
		if !x.d.modelKnown(x.Route != nil, x.Pool(), x.Model) {
			x.mModel = UnknownModel
			if x.mTarget == x.Model {
				x.mTarget = UnknownModel
			}
		}
	}
	return x.mModel, x.mTarget
}

// modelKnown reports whether model is one the configuration or a pool
// knows: a route matched it, a rewrite of pool names it, or one of pool's
// model servers reports serving it (its served models, its base model or
// a loaded LoRA adapter). "" is known: there is nothing to fold.
func (d *Director) modelKnown(routed bool, pool, model string) bool {
	if model == "" || routed {
		return true
	}
	if _, rule := d.store.Rewrite(pool, model, 0); rule != "" {
		return true
	}
	p := d.store.Pool(pool)
	if p == nil {
		return false
	}
	for _, e := range p.Endpoints {
		if servesModel(e, model) {
			return true
		}
	}
	return false
}

func servesModel(e *datastore.Endpoint, model string) bool {
	if slices.Contains(e.ServedModels(), model) {
		return true
	}
	m := e.Metrics()
	if m == nil {
		return false
	}
	if slices.Contains(m.BaseModels, model) {
		return true
	}
	_, active := m.ActiveAdapters[model]
	_, waiting := m.WaitingAdapters[model]
	return active || waiting
}

// Outcomes of a request's stay in flow control, as the reference
// Endpoint Picker names them (inference_extension_flow_control_*).
const (
	QueueDispatched       = "Dispatched"
	QueueRejectedCapacity = "RejectedCapacity"
	QueueRejectedOther    = "RejectedOther"
	QueueEvictedTTL       = "EvictedTTL"
	QueueEvictedCanceled  = "EvictedContextCancelled"
)

// FlowEntry is a request in a pool's admission (flow control), as the
// Observer's Queued and Dequeued see it.
type FlowEntry struct {
	Pool, FairnessID               string
	Priority                       int32
	MetricModel, MetricTargetModel string
}

// PriorityLabel is the priority as a metric label.
func (f *FlowEntry) PriorityLabel() string { return strconv.Itoa(int(f.Priority)) }
