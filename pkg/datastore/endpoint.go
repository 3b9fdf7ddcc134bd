package datastore

import (
	"sync/atomic"
	"time"
)

// Engine names a model-server implementation; it selects the metric names
// the scraper reads (REFERENCE §4). Values follow the pod label
// inference.networking.k8s.io/engine-type.
type Engine string

// Engines igw knows how to scrape.
const (
	EngineVLLM        Engine = "vllm"
	EngineSGLang      Engine = "sglang"
	EngineTRTLLMServe Engine = "trtllm-serve"
	EngineTritonTRT   Engine = "triton-tensorrt-llm"
)

// Metrics is one scrape of a model server. It is immutable once published:
// the scraper builds a new value for every scrape.
type Metrics struct {
	// WaitingQueueSize is the number of requests the server has accepted but
	// not started.
	WaitingQueueSize int
	// RunningRequests is the number of sequences in the running batch.
	RunningRequests int
	// KVCacheUsage is the fraction of KV-cache blocks in use, 0..1.
	KVCacheUsage float64
	// ActiveAdapters and WaitingAdapters are the LoRA adapters with running
	// and waiting requests; MaxActiveAdapters is the server's slot count
	// (0 when the server reports no LoRA information).
	ActiveAdapters    map[string]struct{}
	WaitingAdapters   map[string]struct{}
	MaxActiveAdapters int
	// BaseModels are the model names the server reports in its metrics
	// model_name label: its base model(s), as opposed to LoRA adapters.
	BaseModels []string
	// CacheBlockSize and CacheNumBlocks describe the KV cache geometry when
	// the server reports it (0 otherwise).
	CacheBlockSize int
	CacheNumBlocks int
	// UpdateTime is when the scrape finished; the basis of staleness.
	UpdateTime time.Time
}

// EstimatedQueue is the server's waiting queue as scraped plus the requests
// igw has sent since that the scrape cannot show yet: inFlight requests
// beyond what the server reported as waiting or running. Without it, a
// burst routed between two scrapes would all see the same short queue.
func (m *Metrics) EstimatedQueue(inFlight int64) int {
	return m.WaitingQueueSize + max(0, int(inFlight)-m.WaitingQueueSize-m.RunningRequests)
}

// Fresh reports whether the snapshot is younger than maxAge at now.
func (m *Metrics) Fresh(now time.Time, maxAge time.Duration) bool {
	return m != nil && now.Sub(m.UpdateTime) <= maxAge
}

// Endpoint is one model-server address a pool can route to (a pod:port pair
// or a static URL). Its identity fields are set at creation and never
// change; its metrics and in-flight count change concurrently.
type Endpoint struct {
	// Name identifies the endpoint within its pool, e.g. "pod-a:8000".
	Name string
	// Address is host:port, the value sent as x-gateway-destination-endpoint.
	Address string
	// Pool is the namespaced name of the InferencePool that owns it.
	Pool string
	// Labels are the endpoint's labels (pod labels, or static config labels),
	// used by label filters.
	Labels map[string]string
	// Engine selects the scraper's metric mapping.
	Engine Engine

	metrics  atomic.Pointer[Metrics]
	served   atomic.Pointer[[]string]
	ready    atomic.Bool
	inFlight atomic.Int64
	// peerInFlight is the other igw replicas' in-flight requests here.
	peerInFlight atomic.Int64
	maxRunning   atomic.Int64 // the most it was seen running
	full         atomic.Bool  // it was seen with requests waiting
	finished     atomic.Int64 // igw's requests that completed since the last scrape
	ceiling      atomic.Int64 // requests it held when it last refused one, 0: none
	refused      atomic.Int64 // when, unix nanoseconds
	// plugins is what scheduling plugins keep on the endpoint (see
	// PluginState), copied on write.
	plugins atomic.Pointer[[]pluginState]
}

type pluginState struct{ owner, value any }

// PluginState is what owner (a scheduling plugin instance, a pointer) stored on this
// endpoint with SetPluginState, or nil. It exists for the scheduling hot
// path: a scorer that keeps per-endpoint state (a learned latency model,
// its slot in an index) reads it here with one atomic load and a scan of
// a few entries, where a map keyed by endpoint costs a hash lookup per
// candidate per decision. Keyed by the instance, so two instances of one
// plugin never share state; dropped with the endpoint object, so an
// endpoint replaced under the same address starts with none.
func (e *Endpoint) PluginState(owner any) any {
	if list := e.plugins.Load(); list != nil {
		for i := range *list {
			if (*list)[i].owner == owner {
				return (*list)[i].value
			}
		}
	}
	return nil
}

// SetPluginState stores value for owner on this endpoint (nil removes
// it). Writes are rare (once per endpoint and plugin), so each copies the
// list and readers never lock.
func (e *Endpoint) SetPluginState(owner, value any) {
	for {
		old := e.plugins.Load()
		var next []pluginState
		if old != nil {
			next = make([]pluginState, 0, len(*old)+1)
			for _, st := range *old {
				if st.owner != owner {
					next = append(next, st)
				}
			}
		}
		if value != nil {
			next = append(next, pluginState{owner, value})
		}
		if e.plugins.CompareAndSwap(old, &next) {
			return
		}
	}
}

// RefusalMemory is how long a refusal's ceiling holds (see
// RefusalCeiling): long enough that a full server is not probed with a
// request it will refuse every time a slot frees, short enough that a
// server whose room grew (shorter prompts, prefixes shared) is used again.
const RefusalMemory = 5 * time.Second

// NewEndpoint creates an endpoint with no metrics yet (not ready).
func NewEndpoint(name, address, pool string, engine Engine, labels map[string]string) *Endpoint {
	if engine == "" {
		engine = EngineVLLM
	}
	return &Endpoint{Name: name, Address: address, Pool: pool, Engine: engine, Labels: labels}
}

// Metrics returns the latest snapshot, or nil before the first scrape.
func (e *Endpoint) Metrics() *Metrics { return e.metrics.Load() }

// SetMetrics publishes a new snapshot. m must not be modified afterwards.
// Snapshots teach the endpoint's concurrency limit (see
// ConcurrencyLimit).
func (e *Endpoint) SetMetrics(m *Metrics) {
	e.metrics.Store(m)
	e.finished.Store(0)
	if m == nil {
		return
	}
	for {
		cur := e.maxRunning.Load()
		if int64(m.RunningRequests) <= cur || e.maxRunning.CompareAndSwap(cur, int64(m.RunningRequests)) {
			break
		}
	}
	if m.WaitingQueueSize > 0 {
		e.full.Store(true)
	}
}

// ConcurrencyLimit is how many requests the server runs at once, learned
// from its metrics: 0 until the server has been seen full once (requests
// waiting), then the most it has been seen running (vLLM's max-num-seqs,
// or fewer when its KV cache is the bound). Engines do not export the
// limit itself. The most ever seen running, rather than the most running
// while others waited, lets the estimate grow when igw holds requests in
// its own queue: a server that takes one more than the estimate shows it
// running, though nothing waits there.
func (e *Endpoint) ConcurrencyLimit() int {
	if !e.full.Load() {
		return 0
	}
	return int(e.maxRunning.Load())
}

// ServedModels are the models the server last listed in /v1/models: its
// base model and every LoRA adapter it has loaded, idle or not. Nil means
// unknown (not fetched yet, or the server has no such API).
func (e *Endpoint) ServedModels() []string {
	if p := e.served.Load(); p != nil {
		return *p
	}
	return nil
}

// SetServedModels publishes the models the server serves; models must not
// be modified afterwards.
func (e *Endpoint) SetServedModels(models []string) { e.served.Store(&models) }

// Ready reports whether the endpoint's health check last passed.
func (e *Endpoint) Ready() bool { return e.ready.Load() }

// SetReady records the latest health-check result.
func (e *Endpoint) SetReady(ok bool) { e.ready.Store(ok) }

// InFlight is the number of requests igw has sent to the endpoint that have
// not completed: fresher than any scrape, so scorers can account for
// requests the server has not reported yet. With active-active replicas it
// includes the other replicas' counts (SetPeerInFlight).
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() + e.peerInFlight.Load() }

// OwnInFlight is the part of InFlight this igw replica sent: what it
// shares with its peers.
func (e *Endpoint) OwnInFlight() int64 { return e.inFlight.Load() }

// SetPeerInFlight records the other igw replicas' in-flight requests to
// the endpoint (package peerload), as last shared.
func (e *Endpoint) SetPeerInFlight(n int64) { e.peerInFlight.Store(n) }

// AddInFlight adjusts the in-flight count by delta (+1 on dispatch, -1 on
// completion).
func (e *Endpoint) AddInFlight(delta int64) {
	e.inFlight.Add(delta)
	if delta < 0 {
		e.finished.Add(-delta)
	}
}

// NoteRefusal records that the server refused a request for lack of room
// (a 429, 500 or 503 before any output while it held others): it could
// not take one more than it held, so RefusalCeiling is what it held, the
// refused request not counted.
func (e *Endpoint) NoteRefusal(now time.Time) {
	e.ceiling.Store(int64(max(1, e.Busy()-1)))
	e.refused.Store(now.UnixNano())
}

// RefusalCeiling is how many requests the server held when it last
// refused one for lack of room, within RefusalMemory of now; 0 when it has
// not refused since. Engines that refuse work when their KV cache is full
// (rather than queue it) never show a waiting queue, so their limit can
// only be learned from their refusals.
func (e *Endpoint) RefusalCeiling(now time.Time) int {
	c := e.ceiling.Load()
	if c == 0 || now.Sub(time.Unix(0, e.refused.Load())) > RefusalMemory {
		return 0
	}
	return int(c)
}

// Busy is the best estimate of how many requests the server holds now,
// running or waiting: what its last scrape reported less the requests of
// igw's that completed since, or igw's own in-flight count if that is
// more. The scrape sees other clients' requests; igw's count sees the
// last milliseconds. A slot freed since the scrape shows at once, so a
// queue held in igw is released without waiting for the next scrape.
func (e *Endpoint) Busy() int {
	busy := e.InFlight()
	if m := e.metrics.Load(); m != nil {
		busy = max(busy, int64(m.RunningRequests+m.WaitingQueueSize)-e.finished.Load())
	}
	return int(busy)
}

// Waiting is the best estimate of how many requests wait in the server's
// own queue now: what its last scrape reported waiting less igw's
// requests that completed since — each completion frees a running slot
// the engine fills from its queue at its next step. Without it, a queue
// the scrape caught for an instant (a request sent just before it, not
// yet admitted) would hold every request a whole scrape interval.
func (e *Endpoint) Waiting() int {
	m := e.metrics.Load()
	if m == nil {
		return 0
	}
	return max(0, m.WaitingQueueSize-int(e.finished.Load()))
}
