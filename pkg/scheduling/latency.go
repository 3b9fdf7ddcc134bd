package scheduling

import (
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

// CachedPromptKey is the CycleState entry where a prefix-cache scorer
// publishes, for the candidates it scored, how many of the prompt's bytes
// each is expected to hold in its cache. A latency predictor charges only
// the rest as prefill; without the entry it charges the whole prompt. The
// entry is a *CachedPrompt; a later profile's scoring replaces it.
const CachedPromptKey StateKey = "scheduling/cached-prompt"

// CachedPrompt is the value under CachedPromptKey.
type CachedPrompt struct {
	// Entries are in the order of the candidates that were scored.
	Entries []CachedBytes
}

// CachedBytes is one endpoint's expected cached prompt bytes.
type CachedBytes struct {
	Endpoint *datastore.Endpoint
	Bytes    int
}

// Bytes returns ep's cached bytes; i is where to look first (the
// candidate's index in the cycle), so a scorer of the same cycle finds it
// without a search.
func (c *CachedPrompt) Bytes(ep *datastore.Endpoint, i int) (int, bool) {
	if i >= 0 && i < len(c.Entries) && c.Entries[i].Endpoint == ep {
		return c.Entries[i].Bytes, true
	}
	for _, e := range c.Entries {
		if e.Endpoint == ep {
			return e.Bytes, true
		}
	}
	return 0, false
}

// CachedPromptOf returns the request's published cached-prompt estimate,
// or nil when no prefix-cache scorer ran.
func CachedPromptOf(req *Request) *CachedPrompt {
	if v, ok := req.State().Read(CachedPromptKey); ok {
		return v.(*CachedPrompt)
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
