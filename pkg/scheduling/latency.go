package scheduling

import (
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

// CachedPromptKey is the CycleState entry where a prefix-cache scorer
// publishes how many of the prompt's bytes each endpoint is expected to
// hold in its cache (a CachedPrompt). A latency predictor charges only the
// rest as prefill; without the entry it charges the whole prompt.
const CachedPromptKey StateKey = "scheduling/cached-prompt"

// CachedPrompt tells how much of a request's prompt endpoints hold.
type CachedPrompt interface {
	// CachedBytesAt is candidate i's cached bytes, for the candidates
	// being scored: within the cycle that published the entry it is a
	// lookup of what was already computed, elsewhere it is CachedBytes.
	CachedBytesAt(cands []Candidate, i int) int
	// CachedBytes is ep's cached bytes, looked up in the index (a few
	// hash probes), for use outside a scoring cycle.
	CachedBytes(ep *datastore.Endpoint) int
}

// CachedPromptOf returns the request's published cached-prompt estimate,
// or nil when no prefix-cache scorer ran.
func CachedPromptOf(req *Request) CachedPrompt {
	if v, ok := req.State().Read(CachedPromptKey); ok {
		return v.(CachedPrompt)
	}
	return nil
}

// Prediction is a predicted latency of a request on one endpoint.
type Prediction struct {
	// TTFT is the time to the first token, queueing at the server included.
	TTFT time.Duration
	// TPOT is the time per output token after the first.
	TPOT time.Duration
}

// LatencyPredictor is implemented by plugins that predict a request's
// latency on an endpoint from what they have learned. The Director asks
// the scheduler's predictor (Scheduler.PredictLatency) whether a request
// with a latency objective can meet it on the endpoint chosen, to shed
// sheddable requests that cannot rather than let them take a slot and
// miss anyway.
type LatencyPredictor interface {
	Plugin
	// PredictLatency predicts req's latency on ep as ep is loaded now; ok
	// is false when the plugin cannot predict (it has learned nothing yet).
	PredictLatency(req *Request, ep *datastore.Endpoint) (p Prediction, ok bool)
}

// PredictLatency is the prediction of the scheduler's latency predictor
// (the first configured plugin that is one) for req on ep; ok is false
// without a predictor or when it cannot predict.
func (s *Scheduler) PredictLatency(req *Request, ep *datastore.Endpoint) (Prediction, bool) {
	if s.predictor == nil || ep == nil {
		return Prediction{}, false
	}
	return s.predictor.PredictLatency(req, ep)
}

// CostModel is implemented by plugins that have learned what, on one
// endpoint, a KiB of prompt to prefill and a request waiting ahead each
// add to time to first token (the latency-scorer's per-endpoint weights).
// The prefix-cache scorer's load bound uses it to ask the real question —
// does the prefill a cached prefix saves there outweigh the wait its longer
// queue adds? — instead of allowing a fixed queue difference, which is too
// strict for long shared prompts on a fast-prefilling server and too loose
// for short ones.
type CostModel interface {
	Plugin
	// Costs returns ep's learned seconds of TTFT per KiB of uncached
	// prompt and per request waiting ahead; ok is false until they are
	// learned (from ep or, for a new endpoint, from the pool's others).
	Costs(ep *datastore.Endpoint) (perKiB, perAhead float64, ok bool)
}

// CostModelUser is implemented by plugins that use the scheduler's cost
// model when one is configured; NewScheduler hands it over before the
// first cycle.
type CostModelUser interface {
	Plugin
	UseCostModel(CostModel)
}
