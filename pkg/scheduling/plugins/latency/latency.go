package latency

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "latency-scorer"

// Defaults; see the package doc.
const (
	DefaultForgettingFactor = 0.995
	DefaultMinObservations  = 8
)

// scoreSmoothing is c in the score (best+c)/(ttft+c): predictions a few
// milliseconds apart are noise, not a reason to move traffic.
const scoreSmoothing = 0.010 // seconds

var (
	_ scheduling.Scorer            = (*Scorer)(nil)
	_ scheduling.PreRequest        = (*Scorer)(nil)
	_ scheduling.ResponseComplete  = (*Scorer)(nil)
	_ scheduling.EndpointForgetter = (*Scorer)(nil)
	_ scheduling.LatencyPredictor  = (*Scorer)(nil)
	_ scheduling.CostModel         = (*Scorer)(nil)
)

// Parameters are the latency-scorer's configuration; see the package doc.
type Parameters struct {
	ForgettingFactor float64 `json:"forgettingFactor"`
	MinObservations  int     `json:"minObservations"`
}

// DefaultParameters are the values used for parameters not configured.
func DefaultParameters() Parameters {
	return Parameters{ForgettingFactor: DefaultForgettingFactor, MinObservations: DefaultMinObservations}
}

// Validate rejects out-of-range values, naming the parameter.
func (p Parameters) Validate() error {
	switch {
	case !(p.ForgettingFactor > 0.9 && p.ForgettingFactor <= 1):
		return scheduling.ParamError("forgettingFactor", "must be in (0.9, 1], got %v", p.ForgettingFactor)
	case p.MinObservations < 1 || p.MinObservations > 1_000_000:
		return scheduling.ParamError("minObservations", "must be between 1 and 1000000, got %d", p.MinObservations)
	}
	return nil
}

// Starting weights, before any endpoint has taught anything: 20 ms, plus
// 10 ms per uncached KiB of prompt, 100 ms per request ahead, 5 ms per
// request in the batch; 10 ms per token plus 1 ms per batched request and
// 10 ms at a full KV cache. Only their ranking matters until real ones
// replace them.
var (
	startTTFT = vec{0.020, 0.010, 0.100, 0.005}
	startTPOT = vec{0.010, 0.001, 0.010}
)

// weights is one endpoint's (or the pool prior's) learned weights,
// published as an immutable value so predictions read them with one
// atomic load and no lock.
type weights struct {
	ttft, tpot vec
	n          int // responses learned from
}

// model is one endpoint's learner.
type model struct {
	mu         sync.Mutex
	ttft, tpot rls
	n          int
	cur        atomic.Pointer[weights]
}

func newModel(prior *weights) *model {
	m := &model{ttft: newRLS(4, prior.ttft), tpot: newRLS(3, prior.tpot)}
	m.cur.Store(&weights{ttft: prior.ttft, tpot: prior.tpot})
	return m
}

// Scorer is the latency scorer and its per-endpoint models.
type Scorer struct {
	name     string
	params   Parameters
	stateKey scheduling.StateKey

	mu     sync.RWMutex // guards models
	models map[*datastore.Endpoint]*model
	prior  atomic.Pointer[weights]
	learns atomic.Uint64
}

// New returns a latency scorer named name; p must be valid.
func New(name string, p Parameters) *Scorer {
	s := &Scorer{name: name, params: p, stateKey: scheduling.StateKey(Type + "/" + name), models: map[*datastore.Endpoint]*model{}}
	s.prior.Store(&weights{ttft: startTTFT, tpot: startTPOT})
	return s
}

// Factory builds a latency-scorer from configuration.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	p := DefaultParameters()
	if err := scheduling.DecodeParameters(raw, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return New(name, p), nil
}

// Register adds the latency-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// features are what a prediction is made from, taken when the request is
// scored or sent.
func features(m *datastore.Metrics, inFlight int64, limit int, promptBytes, cachedBytes int) (ttft, tpot vec) {
	ahead, batch, kv := load(m, inFlight, limit)
	return vec{1, uncachedKiB(promptBytes, cachedBytes), ahead, batch}, vec{1, batch + 1, kv}
}

// load is the queue ahead of a new request, the batch it would join and
// the KV-cache use, at the server as best known.
func load(m *datastore.Metrics, inFlight int64, limit int) (ahead, batch, kv float64) {
	at := m.RunningRequests + m.EstimatedQueue(inFlight)
	if limit > 0 {
		ahead, batch = float64(max(0, at+1-limit)), float64(min(at, limit))
	} else {
		ahead, batch = float64(m.EstimatedQueue(inFlight)), float64(m.RunningRequests)
	}
	kv = m.KVCacheUsage
	if !(kv > 0) {
		kv = 0
	}
	return ahead, batch, min(kv, 1)
}

func uncachedKiB(promptBytes, cachedBytes int) float64 {
	return float64(max(0, promptBytes-cachedBytes)) * (1.0 / 1024)
}

// weightsFor returns the weights to predict ep with: its own once it has
// learned enough, else the prior. The model is read from the endpoint
// itself (PluginState), not from s.models: no lock and no map lookup per
// candidate on the scheduling path.
func (s *Scorer) weightsFor(ep *datastore.Endpoint, prior *weights) *weights {
	if m, _ := ep.PluginState(s).(*model); m != nil {
		if w := m.cur.Load(); w.n >= s.params.MinObservations {
			return w
		}
	}
	return prior
}

func predict(w *weights, ttft, tpot *vec) (float64, float64) {
	return max(0, dot(&w.ttft, ttft)), max(0, dot(&w.tpot, tpot))
}

// Score implements scheduling.Scorer; see the package doc.
func (s *Scorer) Score(_ context.Context, req *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	cached := scheduling.CachedPromptOf(req)
	prior := s.prior.Load()
	tpotSLO := req.TPOTObjective.Seconds()
	best := math.Inf(1)
	for i := range cands {
		c := &cands[i]
		cb := 0
		if cached != nil {
			cb = cached.CachedBytesAt(cands, i)
		}
		// The features and dot products of features, inline and in
		// scalars: 32-byte vectors passed by value cost more than the
		// arithmetic on this path.
		w := s.weightsFor(c.Endpoint, prior)
		ahead, batch, kv := load(c.Metrics, c.InFlight, c.Endpoint.ConcurrencyLimit())
		ttft := max(0, w.ttft[0]+w.ttft[1]*uncachedKiB(len(req.Prompt), cb)+w.ttft[2]*ahead+w.ttft[3]*batch)
		// The prediction waits in scores until best is known; a
		// candidate over the TPOT objective is stored negated (−ttft−1,
		// never 0) so the second pass can halve its score without a
		// per-candidate buffer.
		scores[i] = ttft
		if tpotSLO > 0 && w.tpot[0]+w.tpot[1]*(batch+1)+w.tpot[2]*kv > tpotSLO {
			scores[i] = -ttft - 1
		}
		best = min(best, ttft)
	}
	for i, v := range scores {
		half := v < 0
		if half {
			v = -v - 1
		}
		scores[i] = (best + scoreSmoothing) / (v + scoreSmoothing)
		if half {
			scores[i] /= 2
		}
	}
}

// PredictLatency implements scheduling.LatencyPredictor. It cannot
// predict before any endpoint has learned from minObservations responses.
func (s *Scorer) PredictLatency(req *scheduling.Request, ep *datastore.Endpoint) (scheduling.Prediction, bool) {
	m := ep.Metrics()
	if m == nil {
		return scheduling.Prediction{}, false
	}
	cb := 0
	if cached := scheduling.CachedPromptOf(req); cached != nil {
		cb = cached.CachedBytes(ep)
	}
	x, z := features(m, ep.InFlight(), ep.ConcurrencyLimit(), len(req.Prompt), cb)
	w := s.weightsFor(ep, s.prior.Load())
	if w.n < s.params.MinObservations {
		return scheduling.Prediction{}, false
	}
	ttft, tpot := predict(w, &x, &z)
	return scheduling.Prediction{TTFT: seconds(ttft), TPOT: seconds(tpot)}, true
}

// Costs implements scheduling.CostModel: ep's TTFT weights for uncached
// prompt KiB and for requests ahead (the pool's prior for an endpoint
// still learning). Not ok before any endpoint has learned from
// minObservations responses, or while a weight is not positive (a model
// that has not seen queueing yet cannot price it).
func (s *Scorer) Costs(ep *datastore.Endpoint) (perKiB, perAhead float64, ok bool) {
	w := s.weightsFor(ep, s.prior.Load())
	if w.n < s.params.MinObservations || !(w.ttft[1] > 0) || !(w.ttft[2] > 0) {
		return 0, 0, false
	}
	return w.ttft[1], w.ttft[2], true
}

func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

// dispatch is what PreRequest saw when the request was sent, kept in the
// request's state until its response teaches the endpoint's model.
type dispatch struct {
	ep   *datastore.Endpoint
	x, z vec
}

// PreRequest implements scheduling.PreRequest: it records the features
// of the endpoint the request is sent to.
func (s *Scorer) PreRequest(_ context.Context, req *scheduling.Request, _ *scheduling.Result, target *datastore.Endpoint) {
	if target == nil {
		return
	}
	m := target.Metrics()
	if m == nil {
		m = &datastore.Metrics{}
	}
	cb := 0
	if cached := scheduling.CachedPromptOf(req); cached != nil {
		cb = cached.CachedBytes(target)
	}
	// The request itself is already counted in flight.
	x, z := features(m, max(0, target.InFlight()-1), target.ConcurrencyLimit(), len(req.Prompt), cb)
	d := &dispatch{ep: target, x: x, z: z}
	req.State().Write(s.stateKey, d)
}

// ResponseComplete implements scheduling.ResponseComplete: a successful
// response teaches its endpoint's model.
func (s *Scorer) ResponseComplete(_ context.Context, req *scheduling.Request, resp *scheduling.Response, target *datastore.Endpoint) {
	v, ok := req.State().Read(s.stateKey)
	if !ok || target == nil || resp.Err != nil || resp.StatusCode != 200 || resp.Duration <= 0 {
		return
	}
	d := v.(*dispatch)
	if d.ep != target {
		return
	}
	m := s.model(target)
	s.learn(m, d, resp)
	if s.learns.Add(1)%16 == 0 {
		s.updatePrior()
	}
}

// model returns ep's model, making it on ep's first response. A model
// lives on its endpoint (PluginState), where scoring reads it, and in
// s.models, which the prior, ForgetEndpoint and Observations walk. The
// datastore keeps an endpoint's object while its address, engine and
// labels stay, and one replaced under the same address starts over: its
// old model is dropped here.
func (s *Scorer) model(ep *datastore.Endpoint) *model {
	if m, _ := ep.PluginState(s).(*model); m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[ep]
	if m == nil {
		for old := range s.models {
			if old.Address == ep.Address {
				delete(s.models, old)
				old.SetPluginState(s, nil)
			}
		}
		m = newModel(s.prior.Load())
		s.models[ep] = m
	}
	ep.SetPluginState(s, m)
	return m
}

func (s *Scorer) learn(m *model, d *dispatch, resp *scheduling.Response) {
	lambda := s.params.ForgettingFactor
	out := resp.CompletionTokens
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case resp.Streamed && resp.FirstByte > 0:
		m.ttft.update(&d.x, resp.FirstByte.Seconds(), lambda)
		if out >= 2 && resp.Duration > resp.FirstByte {
			m.tpot.update(&d.z, (resp.Duration-resp.FirstByte).Seconds()/float64(out-1), lambda)
		}
	case !resp.Streamed && out >= 1:
		decode := max(0, dot(&m.tpot.w, &d.z)) * float64(out-1)
		m.ttft.update(&d.x, max(0, resp.Duration.Seconds()-decode), lambda)
	default:
		return
	}
	m.n++
	m.cur.Store(&weights{ttft: m.ttft.w, tpot: m.tpot.w, n: m.n})
}

// updatePrior sets the prior to the mean weights of the endpoints that
// have learned enough, so a new endpoint starts from what its pool-mates
// taught rather than from guesses.
func (s *Scorer) updatePrior() {
	var sum weights
	k := 0
	s.mu.RLock()
	for _, m := range s.models {
		w := m.cur.Load()
		if w.n < s.params.MinObservations {
			continue
		}
		for i := range sum.ttft {
			sum.ttft[i] += w.ttft[i]
			sum.tpot[i] += w.tpot[i]
		}
		sum.n = max(sum.n, w.n)
		k++
	}
	s.mu.RUnlock()
	if k == 0 {
		return
	}
	for i := range sum.ttft {
		sum.ttft[i] /= float64(k)
		sum.tpot[i] /= float64(k)
	}
	s.prior.Store(&sum)
}

// ForgetEndpoint implements scheduling.EndpointForgetter.
func (s *Scorer) ForgetEndpoint(address string) {
	s.mu.Lock()
	for ep := range s.models {
		if ep.Address == address {
			delete(s.models, ep)
			ep.SetPluginState(s, nil)
		}
	}
	s.mu.Unlock()
}

// Observations is how many responses the endpoint's model has learned
// from (0 for an endpoint it does not know), for tests and debugging.
func (s *Scorer) Observations(address string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for ep, m := range s.models {
		if ep.Address == address {
			return m.cur.Load().n
		}
	}
	return 0
}
