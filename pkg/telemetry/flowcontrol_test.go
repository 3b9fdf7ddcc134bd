package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/igw-dev/igw/pkg/datastore"
)

func TestFlowMetrics_RecordOutcomesAndQueues(t *testing.T) {
	m := NewMetrics()
	f := m.Flow("ns/p")
	f.QueueChanged(10, 3, 300)
	f.Outcome(10, "dispatched", 20*time.Millisecond)
	f.Outcome(-1, "rejected-saturated", 0)
	if got := testutil.ToFloat64(m.flow.queueRequests.WithLabelValues("ns/p", "10")); got != 3 {
		t.Errorf("queue size %v", got)
	}
	if got := testutil.ToFloat64(m.flow.outcomes.WithLabelValues("ns/p", "-1", "rejected-saturated")); got != 1 {
		t.Errorf("shed outcomes %v", got)
	}
}

func TestPoolCollector_AveragesFreshReadyEndpoints(t *testing.T) {
	s := datastore.NewStore(nil)
	s.SetPool("ns/p", []datastore.EndpointSpec{{Name: "a", Address: "127.0.0.1:1"}, {Name: "b", Address: "127.0.0.1:2"}, {Name: "c", Address: "127.0.0.1:3"}})
	now := time.Now()
	eps := s.Pool("ns/p").Endpoints
	eps[0].SetMetrics(&datastore.Metrics{WaitingQueueSize: 2, KVCacheUsage: 0.2, UpdateTime: now})
	eps[1].SetMetrics(&datastore.Metrics{WaitingQueueSize: 6, KVCacheUsage: 0.6, UpdateTime: now})
	eps[2].SetMetrics(&datastore.Metrics{WaitingQueueSize: 100, KVCacheUsage: 1, UpdateTime: now.Add(-time.Hour)}) // stale
	for _, e := range eps {
		e.SetReady(true)
	}
	m := NewMetrics()
	m.RegisterPoolCollector(s, func([]*datastore.Endpoint, time.Time) float64 { return 0.5 })
	want := `
# HELP igw_pool_average_queue_size Average waiting queue over the pool's ready endpoints with fresh metrics.
# TYPE igw_pool_average_queue_size gauge
igw_pool_average_queue_size{pool="ns/p"} 4
# HELP igw_pool_ready_endpoints Endpoints of the pool that are ready with fresh metrics.
# TYPE igw_pool_ready_endpoints gauge
igw_pool_ready_endpoints{pool="ns/p"} 2
# HELP igw_pool_saturation Fraction of the pool's endpoints without headroom (1 for an empty pool).
# TYPE igw_pool_saturation gauge
igw_pool_saturation{pool="ns/p"} 0.5
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "igw_pool_average_queue_size", "igw_pool_ready_endpoints", "igw_pool_saturation"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(`
# HELP igw_pool_average_kv_cache_utilization Average KV-cache utilization (0..1) over the pool's ready endpoints with fresh metrics.
# TYPE igw_pool_average_kv_cache_utilization gauge
igw_pool_average_kv_cache_utilization{pool="ns/p"} 0.4
`), "igw_pool_average_kv_cache_utilization"); err != nil {
		t.Fatal(err)
	}
}

func TestFlowMetrics_SeriesExistFromTheFirstScrape(t *testing.T) {
	s := datastore.NewStore(nil)
	s.SetPool("ns/p", []datastore.EndpointSpec{{Name: "a", Address: "127.0.0.1:1"}})
	s.SetObjectives(map[string]map[string]int32{"ns/p": {"batch": -1, "critical": 10}})
	m := NewMetrics()
	m.RegisterPoolCollector(s, nil)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[f.GetName()] = append(got[f.GetName()], strings.Join(labels, ","))
		}
	}
	for _, name := range []string{"igw_flow_control_queue_size", "igw_flow_control_queue_bytes", "igw_flow_control_wait_seconds"} {
		if want := []string{"pool=ns/p,priority=-1", "pool=ns/p,priority=0", "pool=ns/p,priority=10"}; strings.Join(got[name], " ") != strings.Join(want, " ") {
			t.Errorf("%s series %v, want %v", name, got[name], want)
		}
	}
	for _, name := range []string{"igw_pool_average_queue_size", "igw_pool_average_kv_cache_utilization"} {
		if len(got[name]) != 1 {
			t.Errorf("%s series %v, want one for the pool with no ready endpoint", name, got[name])
		}
	}
}
