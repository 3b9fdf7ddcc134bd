package flowcontrol

import (
	"fmt"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

// SaturationConfig holds the thresholds past which an endpoint has no
// headroom. The defaults are the widely used ones (REFERENCE §5).
type SaturationConfig struct {
	// QueueDepthThreshold: an endpoint with at least this many waiting
	// requests is saturated. Once the endpoint's concurrency limit is
	// known, waiting is what it holds (Endpoint.Busy) beyond the limit,
	// fresher than its scraped queue. 0 means saturated as soon as every
	// slot is taken or the server queues anything itself, so requests
	// wait in igw's queue, in priority and deadline order, rather than in
	// the server's; until the limit is known it means an estimated queue
	// of 5.
	QueueDepthThreshold int `json:"queueDepthThreshold"`
	// KVCacheUtilThreshold: an endpoint with at least this KV-cache
	// utilization (0..1) is saturated.
	KVCacheUtilThreshold float64 `json:"kvCacheUtilThreshold"`
	// MetricsStalenessThreshold: an endpoint whose metrics are older than
	// this is treated as saturated — nothing is known about its headroom.
	MetricsStalenessThreshold time.Duration `json:"metricsStalenessThreshold"`
	// ReservedSlots is how many of each endpoint's running slots
	// (its learned concurrency limit) sheddable requests may not take, so
	// a sheddable flood cannot occupy every slot and a request of priority
	// ≥ 0 finds one free without waiting for a batch to drain. 0 turns it
	// off.
	ReservedSlots int `json:"reservedSlots"`
}

// DefaultQueueDepthThreshold is 0: an endpoint whose learned slots are
// all taken is saturated, so requests beyond the fleet's slots wait in
// igw's queue (ordered by priority and deadline) rather than in the
// servers' (first come first served, evicting each other's cached
// prefixes). Measured against the widely used 5 in the same runs: equal
// on the standard ladder, more throughput and prefix hits under overload,
// more latency objectives met (docs/performance.md, issue 14).
const DefaultQueueDepthThreshold = 0

// DefaultSaturationConfig returns queue DefaultQueueDepthThreshold, KV
// 0.8, staleness 200 ms and one slot per endpoint reserved for requests
// that matter more.
func DefaultSaturationConfig() SaturationConfig {
	return SaturationConfig{QueueDepthThreshold: DefaultQueueDepthThreshold, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: datastore.DefaultMaxAge,
		ReservedSlots: 1}
}

// Validate rejects thresholds that would make every endpoint saturated or
// none.
func (c SaturationConfig) Validate() error {
	switch {
	case c.QueueDepthThreshold < 0:
		return fmt.Errorf("queueDepthThreshold: must be ≥ 0, got %d", c.QueueDepthThreshold)
	case c.KVCacheUtilThreshold <= 0 || c.KVCacheUtilThreshold > 1:
		return fmt.Errorf("kvCacheUtilThreshold: must be in (0, 1], got %g", c.KVCacheUtilThreshold)
	case c.MetricsStalenessThreshold <= 0:
		return fmt.Errorf("metricsStalenessThreshold: must be > 0, got %v", c.MetricsStalenessThreshold)
	case c.ReservedSlots < 0:
		return fmt.Errorf("reservedSlots: must be ≥ 0, got %d", c.ReservedSlots)
	}
	return nil
}

// SaturationDetector judges endpoints and pools against a SaturationConfig.
type SaturationDetector struct {
	cfg SaturationConfig
}

// NewSaturationDetector validates cfg.
func NewSaturationDetector(cfg SaturationConfig) (*SaturationDetector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("saturation: %w", err)
	}
	return &SaturationDetector{cfg: cfg}, nil
}

// EndpointSaturated reports whether e has no headroom at now.
func (d *SaturationDetector) EndpointSaturated(e *datastore.Endpoint, now time.Time) bool {
	m := e.Metrics()
	if !e.Ready() || !m.Fresh(now, d.cfg.MetricsStalenessThreshold) {
		return true
	}
	if m.KVCacheUsage >= d.cfg.KVCacheUtilThreshold {
		return true
	}
	if c := e.RefusalCeiling(now); c > 0 && e.Busy() >= c {
		return true // it refused a request when it held this many
	}
	waiting := m.EstimatedQueue(e.InFlight())
	limit := e.ConcurrencyLimit()
	if d.cfg.QueueDepthThreshold == 0 {
		switch {
		case e.Waiting() > 0:
			// The server queues (as of its scrape, less what igw saw
			// complete since): below its limit, its KV cache is the
			// bound now.
			return true
		case limit > 0:
			return e.Busy() >= limit // igw's count, fresher than the scrape
		}
		// Never seen full, so its slots are unknown: igw's estimate of
		// what waits there, at the threshold other pickers use. (At 1 it
		// would let one request a scrape interval through to a server
		// that runs short requests and never fills up.)
		return waiting >= unknownLimitQueueDepth
	}
	if limit > 0 {
		// What it holds beyond its slots, fresher than its scrape.
		waiting = max(waiting, e.Busy()-limit)
	}
	return waiting >= d.cfg.QueueDepthThreshold
}

// unknownLimitQueueDepth is queueDepthThreshold 0's bound on the estimated
// queue of a server whose slot count is not known yet.
const unknownLimitQueueDepth = 5

// RoomForSheddable reports whether e has a running slot a sheddable
// request may take: its requests (igw's in flight, or what it reports
// running and waiting, whichever is more) stay below its learned
// concurrency limit minus ReservedSlots (at most a quarter of the limit).
// An endpoint whose limit is not known yet (it has never been full) has
// room.
func (d *SaturationDetector) RoomForSheddable(e *datastore.Endpoint) bool {
	// Never more than a quarter of an endpoint's slots: a server that runs
	// one or two requests at a time (or whose limit was learned low) keeps
	// serving sheddable work.
	limit := e.ConcurrencyLimit()
	if c := e.RefusalCeiling(time.Now()); c > 0 && (limit == 0 || c < limit) {
		limit = c
	}
	reserved := min(d.cfg.ReservedSlots, limit/4)
	if reserved == 0 {
		return true
	}
	return e.Busy() < limit-reserved
}

// FreeSlot reports whether e would start a request at once: it holds
// fewer than its learned concurrency limit (until the limit is known:
// nothing waits there).
func (d *SaturationDetector) FreeSlot(e *datastore.Endpoint) bool {
	if limit := e.ConcurrencyLimit(); limit > 0 {
		return e.Busy() < limit
	}
	m := e.Metrics()
	return m == nil || m.EstimatedQueue(e.InFlight()) == 0
}

// PoolSaturated reports whether no endpoint of eps has headroom. An empty
// pool is saturated.
func (d *SaturationDetector) PoolSaturated(eps []*datastore.Endpoint, now time.Time) bool {
	for _, e := range eps {
		if !d.EndpointSaturated(e, now) {
			return false
		}
	}
	return true
}

// Saturation is the fraction of eps without headroom, 0..1 (1 for an empty
// pool): a gauge for dashboards and autoscalers.
func (d *SaturationDetector) Saturation(eps []*datastore.Endpoint, now time.Time) float64 {
	if len(eps) == 0 {
		return 1
	}
	n := 0
	for _, e := range eps {
		if d.EndpointSaturated(e, now) {
			n++
		}
	}
	return float64(n) / float64(len(eps))
}
