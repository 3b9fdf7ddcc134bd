package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
)

func TestUpstreamMetrics_PoolGaugesPerPoolAndMember(t *testing.T) {
	s := datastore.NewStore(nil)
	s.SetPool("ns/p", []datastore.EndpointSpec{{Name: "a", Address: "127.0.0.1:1"}, {Name: "b", Address: "127.0.0.1:2"}})
	s.SetPool("other/q", []datastore.EndpointSpec{{Name: "c", Address: "127.0.0.1:3"}})
	s.SetPool("more/q", nil)
	now := time.Now()
	for i, e := range s.Pool("ns/p").Endpoints {
		e.SetMetrics(&datastore.Metrics{WaitingQueueSize: 2 + 4*i, KVCacheUsage: 0.2 + 0.4*float64(i), UpdateTime: now})
		e.SetReady(true)
	}
	m := NewMetrics()
	m.RegisterPoolCollector(s, nil)
	want := `
# HELP inference_pool_average_queue_size The average number of requests pending in the model server queue.
# TYPE inference_pool_average_queue_size gauge
inference_pool_average_queue_size{name="more/q"} 0
inference_pool_average_queue_size{name="other/q"} 0
inference_pool_average_queue_size{name="p"} 4
# HELP inference_pool_per_pod_queue_size The total number of requests pending in the model server queue for each underlying pod.
# TYPE inference_pool_per_pod_queue_size gauge
inference_pool_per_pod_queue_size{model_server_pod="a",name="p"} 2
inference_pool_per_pod_queue_size{model_server_pod="b",name="p"} 6
# HELP inference_pool_ready_pods The number of ready pods in the inference server pool.
# TYPE inference_pool_ready_pods gauge
inference_pool_ready_pods{name="more/q"} 0
inference_pool_ready_pods{name="other/q"} 0
inference_pool_ready_pods{name="p"} 2
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "inference_pool_average_queue_size",
		"inference_pool_per_pod_queue_size", "inference_pool_ready_pods"); err != nil {
		t.Fatal(err)
	}
	if got := mustCollectorGauge(t, m, "inference_pool_average_kv_cache_utilization", "p"); got < 0.39 || got > 0.41 {
		t.Errorf("average KV %v, want 0.4", got)
	}
}

// mustCollectorGauge gathers one gauge's value for pool label name.
func mustCollectorGauge(t *testing.T, m *Metrics, metric, name string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != metric {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == name {
					return mt.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{name=%q} missing", metric, name)
	return 0
}

func TestUpstreamMetrics_RequestsErrorsAndRunning(t *testing.T) {
	m := NewMetrics()
	ok := &director.Completion{Model: "llama", MetricModel: "llama", TargetModel: "llama-v2", MetricTargetModel: "llama-v2",
		Status: 200, FromServer: true, Took: 2 * time.Second, RequestBytes: 100, ResponseBytes: 300,
		HasUsage: true, InputTokens: 10, OutputTokens: 4}
	m.InFlight("ns/p", "llama", 1)
	m.RequestDone(ok)
	m.InFlight("ns/p", "llama", -1)
	m.InFlight("ns/p", "llama", 1)
	m.RequestDone(&director.Completion{Model: "x", MetricModel: director.UnknownModel, MetricTargetModel: director.UnknownModel,
		Status: http.StatusTooManyRequests, Reason: director.ReasonSaturated})
	m.RequestDone(&director.Completion{Model: "llama", MetricModel: "llama", MetricTargetModel: "llama", Status: 500, FromServer: true})
	m.RequestDone(&director.Completion{Status: 404}) // no model: not an objective's request

	u := m.upstream
	if got := testutil.ToFloat64(u.requests.WithLabelValues("llama", "llama-v2")); got != 1 {
		t.Errorf("requests %v", got)
	}
	if got := testutil.ToFloat64(u.errors.WithLabelValues(director.UnknownModel, director.UnknownModel, ErrorResourceExhausted)); got != 1 {
		t.Errorf("shed errors %v", got)
	}
	if got := testutil.ToFloat64(u.errors.WithLabelValues("llama", "llama", ErrorModelServer)); got != 1 {
		t.Errorf("model server errors %v", got)
	}
	if got := testutil.ToFloat64(u.running.WithLabelValues("llama")); got != 1 {
		t.Errorf("running %v", got)
	}
	if got := testutil.CollectAndCount(u.requests); got != 3 {
		t.Errorf("%d request series, want 3 (the model-less request is not counted)", got)
	}
	ntpot, err := testutil.GatherAndCount(m.Registry, "inference_objective_normalized_time_per_output_token_seconds", "inference_objective_input_tokens",
		"inference_objective_output_tokens", "inference_objective_request_sizes", "inference_objective_response_sizes", "inference_objective_request_duration_seconds")
	if err != nil || ntpot != 6 {
		t.Errorf("success histograms: %d series (%v), want one each", ntpot, err)
	}
}

func TestUpstreamMetrics_FlowControlAndFairnessFolding(t *testing.T) {
	m := NewMetrics()
	for i := range maxFairnessIDs + 5 {
		e := &director.FlowEntry{Pool: "ns/p", FairnessID: fmt.Sprintf("tenant-%d", i), Priority: 0, MetricModel: "m", MetricTargetModel: "m"}
		m.Queued(e)
		m.Dequeued(e, director.QueueDispatched, time.Millisecond)
	}
	e := &director.FlowEntry{Pool: "ns/p", FairnessID: "tenant-0", Priority: -1, MetricModel: "m", MetricTargetModel: "m"}
	m.Queued(e)
	if got := testutil.ToFloat64(m.upstream.queueSize.WithLabelValues("tenant-0", "-1", "p", "m", "m")); got != 1 {
		t.Errorf("queue size %v, want 1 while queued", got)
	}
	if got := testutil.CollectAndCount(m.upstream.queueDuration); got != maxFairnessIDs+1 {
		t.Errorf("%d queue duration series, want %d (the first ids and %q)", got, maxFairnessIDs+1, OtherFairnessID)
	}
}

func TestAccessLog_OneJSONRecordPerRequest(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics()
	m.RequestDone(&director.Completion{ID: "quiet", Model: "llama", MetricModel: "llama", Status: 200})
	if buf.Len() != 0 {
		t.Fatal("access log written while off")
	}
	m.EnableAccessLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	m.RequestDone(&director.Completion{ID: "r1", Model: "llama", MetricModel: "llama", TargetModel: "llama-v2", Objective: "critical",
		Tenant: "team-a", Endpoint: "10.0.0.1:8000", Status: 200, TTFT: 150 * time.Millisecond, Queued: 20 * time.Millisecond, Took: time.Second,
		InputTokens: 10, OutputTokens: 4, Retries: 1})
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	want := map[string]any{"msg": AccessLogMessage, "request_id": "r1", "model": "llama", "target_model": "llama-v2", "objective": "critical",
		"tenant": "team-a", "endpoint": "10.0.0.1:8000", "status": 200.0, "ttft_seconds": 0.15, "queue_seconds": 0.02, "duration_seconds": 1.0,
		"input_tokens": 10.0, "output_tokens": 4.0, "retries": 1.0}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
}
