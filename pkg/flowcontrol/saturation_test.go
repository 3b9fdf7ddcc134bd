package flowcontrol

import (
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

func endpoint(ready bool, m *datastore.Metrics) *datastore.Endpoint {
	e := datastore.NewEndpoint("e", "127.0.0.1:1", "p", "", nil)
	e.SetReady(ready)
	if m != nil {
		e.SetMetrics(m)
	}
	return e
}

func TestSaturationDetector_Thresholds(t *testing.T) {
	cfg := DefaultSaturationConfig()
	cfg.QueueDepthThreshold = 5 // a server queue of up to four allowed
	d, err := NewSaturationDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cases := []struct {
		name string
		e    *datastore.Endpoint
		want bool
	}{
		{"headroom", endpoint(true, &datastore.Metrics{WaitingQueueSize: 4, KVCacheUsage: 0.79, UpdateTime: now}), false},
		{"queue at threshold", endpoint(true, &datastore.Metrics{WaitingQueueSize: 5, UpdateTime: now}), true},
		{"kv at threshold", endpoint(true, &datastore.Metrics{KVCacheUsage: 0.8, UpdateTime: now}), true},
		{"stale", endpoint(true, &datastore.Metrics{UpdateTime: now.Add(-time.Second)}), true},
		{"never scraped", endpoint(true, nil), true},
		{"not ready", endpoint(false, &datastore.Metrics{UpdateTime: now}), true},
	}
	for _, tc := range cases {
		if got := d.EndpointSaturated(tc.e, now); got != tc.want {
			t.Errorf("%s: saturated=%v, want %v", tc.name, got, tc.want)
		}
	}
	burst := endpoint(true, &datastore.Metrics{WaitingQueueSize: 2, RunningRequests: 4, UpdateTime: now})
	burst.AddInFlight(6 + 2) // 2 sent since the scrape: estimated queue 4
	if d.EndpointSaturated(burst, now) {
		t.Error("estimated queue 4 is below the threshold 5")
	}
	burst.AddInFlight(1)
	if !d.EndpointSaturated(burst, now) {
		t.Error("in-flight requests the scrape has not seen yet are not counted")
	}
	free, full := cases[0].e, cases[1].e
	if d.PoolSaturated([]*datastore.Endpoint{full, free}, now) {
		t.Error("pool with one free endpoint is saturated")
	}
	if !d.PoolSaturated([]*datastore.Endpoint{full}, now) || !d.PoolSaturated(nil, now) {
		t.Error("full or empty pool is not saturated")
	}
	if got := d.Saturation([]*datastore.Endpoint{full, free}, now); got != 0.5 {
		t.Errorf("saturation %v, want 0.5", got)
	}
}

func TestSaturationConfig_Validate(t *testing.T) {
	for _, c := range []SaturationConfig{
		{QueueDepthThreshold: -1, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: time.Second},
		{QueueDepthThreshold: 5, KVCacheUtilThreshold: 1.5, MetricsStalenessThreshold: time.Second},
		{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8},
	} {
		if _, err := NewSaturationDetector(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Sheddable requests leave ReservedSlots of an endpoint's learned limit
// free, but never more than a quarter of it, and nothing before the limit
// is known.
func TestSaturationDetector_RoomForSheddable(t *testing.T) {
	d, err := NewSaturationDetector(DefaultSaturationConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		limit, busy int // limit 0: never full yet
		wantRoom    bool
	}{
		{"limit unknown", 0, 50, true},
		{"limit 8, 6 busy", 8, 6, true},
		{"limit 8, 7 busy: the last slot is reserved", 8, 7, false},
		{"limit 2: too small to reserve", 2, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := datastore.NewEndpoint("a", "10.0.0.1:8000", "p", "vllm", nil)
			if tc.limit > 0 {
				e.SetMetrics(&datastore.Metrics{RunningRequests: tc.limit, WaitingQueueSize: 1})
			}
			e.SetMetrics(&datastore.Metrics{RunningRequests: tc.busy})
			if got := d.RoomForSheddable(e); got != tc.wantRoom {
				t.Errorf("room = %v, want %v", got, tc.wantRoom)
			}
		})
	}
}

// At the default threshold 0 an endpoint is saturated once every slot it
// was learned to have is taken, counted from igw's own in-flight requests
// and completions since the scrape, or once it queues anything itself;
// before the limit is known, at an estimated queue of 5.
func TestSaturationDetector_SlotsFullAtThresholdZero(t *testing.T) {
	d, err := NewSaturationDetector(DefaultSaturationConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := endpoint(true, &datastore.Metrics{RunningRequests: 3, UpdateTime: now})
	if d.EndpointSaturated(e, now) {
		t.Error("limit unknown, nothing waiting: saturated")
	}
	e.SetMetrics(&datastore.Metrics{RunningRequests: 3, WaitingQueueSize: 1, UpdateTime: now})
	if !d.EndpointSaturated(e, now) {
		t.Error("a request waits: not saturated")
	}
	// Now known: 4 slots (the most seen running once it was full).
	e.SetMetrics(&datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 1, UpdateTime: now})
	e.SetMetrics(&datastore.Metrics{RunningRequests: 3, UpdateTime: now})
	if d.EndpointSaturated(e, now) || !d.FreeSlot(e) {
		t.Error("3 of 4 slots taken: saturated or no free slot")
	}
	e.AddInFlight(4) // igw sent one more since the scrape (4 in flight)
	if !d.EndpointSaturated(e, now) || d.FreeSlot(e) {
		t.Error("4 of 4 slots taken: not saturated")
	}
	e.AddInFlight(-1) // one completed: the slot shows at once, before the next scrape
	if d.EndpointSaturated(e, now) {
		t.Error("a completion since the scrape freed a slot, still saturated")
	}

	// A queue the scrape caught is gone once as many of igw's requests
	// completed since: the engine admitted the waiting ones into the
	// freed slots, so the endpoint is not held saturated until the next
	// scrape.
	q := endpoint(true, &datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 1, UpdateTime: now})
	q.SetMetrics(&datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 2, UpdateTime: now})
	q.AddInFlight(6)
	q.AddInFlight(-1)
	if !d.EndpointSaturated(q, now) || q.Waiting() != 1 {
		t.Errorf("2 waiting at the scrape, 1 completed since: not saturated (estimated waiting %d)", q.Waiting())
	}
	q.AddInFlight(-1)
	if q.Waiting() != 0 || !d.EndpointSaturated(q, now) {
		t.Errorf("2 waiting at the scrape, 2 completed since: estimated waiting %d, want 0, and 4 of 4 slots taken", q.Waiting())
	}
	q.AddInFlight(-1)
	if d.EndpointSaturated(q, now) {
		t.Error("2 waiting at the scrape, 3 completed since (3 of 4 slots taken): saturated")
	}

	// Requests sent since the scrape count against the slots, not as a
	// queue: a burst fills a server within one scrape interval.
	burst := endpoint(true, &datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 1, UpdateTime: now})
	burst.SetMetrics(&datastore.Metrics{RunningRequests: 1, UpdateTime: now})
	burst.AddInFlight(3)
	if d.EndpointSaturated(burst, now) {
		t.Error("3 of 4 slots taken (2 sent since the scrape): saturated")
	}
	// Slots unknown (never seen full): an estimated queue of 5, as other
	// pickers, not 1, so a server of short requests is not throttled to
	// one request per scrape.
	fresh := endpoint(true, &datastore.Metrics{RunningRequests: 1, UpdateTime: now})
	fresh.AddInFlight(5) // estimated queue 4
	if d.EndpointSaturated(fresh, now) {
		t.Error("slots unknown, estimated queue 4: saturated")
	}
	fresh.AddInFlight(1)
	if !d.EndpointSaturated(fresh, now) {
		t.Error("slots unknown, estimated queue 5: not saturated")
	}
}
