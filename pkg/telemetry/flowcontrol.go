package telemetry

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/flowcontrol"
)

// FlowMetrics are flow control's metrics for one pool: what is queued, how
// long requests wait, what became of them, and the pool aggregates that
// autoscalers (HPA, KEDA) scale model servers on.
type FlowMetrics struct {
	pool string
	m    *flowVecs
}

var _ flowcontrol.Observer = (*FlowMetrics)(nil)

type flowVecs struct {
	queueRequests *prometheus.GaugeVec
	queueBytes    *prometheus.GaugeVec
	wait          *prometheus.HistogramVec
	outcomes      *prometheus.CounterVec
	// view, once RegisterPoolCollector set it, names the pools and
	// priority bands whose series exist from the start.
	view atomic.Pointer[PoolView]
}

var _ prometheus.Collector = (*flowVecs)(nil)

// Describe implements prometheus.Collector.
func (v *flowVecs) Describe(ch chan<- *prometheus.Desc) {
	v.queueRequests.Describe(ch)
	v.queueBytes.Describe(ch)
	v.wait.Describe(ch)
	v.outcomes.Describe(ch)
}

// Collect implements prometheus.Collector: every known pool's series are
// declared first, so the very first scrape has them.
func (v *flowVecs) Collect(ch chan<- prometheus.Metric) {
	if view := v.view.Load(); view != nil {
		for _, name := range (*view).PoolNames() {
			v.declare(name, (*view).Priorities(name))
		}
	}
	v.queueRequests.Collect(ch)
	v.queueBytes.Collect(ch)
	v.wait.Collect(ch)
	v.outcomes.Collect(ch)
}

func newFlowVecs(reg prometheus.Registerer) *flowVecs {
	v := &flowVecs{
		queueRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "igw_flow_control_queue_size",
			Help: "Requests waiting in flow control, by pool and priority band."}, []string{"pool", "priority"}),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "igw_flow_control_queue_bytes",
			Help: "Request bytes waiting in flow control, by pool and priority band."}, []string{"pool", "priority"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "igw_flow_control_wait_seconds",
			Help:    "Time requests waited in flow control before their outcome.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}}, []string{"pool", "priority"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_flow_control_outcomes_total",
			Help: "Flow-control outcomes (dispatched, rejected-saturated, rejected-ttl-expired, rejected-queue-full, canceled), by pool and priority."},
			[]string{"pool", "priority", "outcome"}),
	}
	reg.MustRegister(v)
	return v
}

// Flow returns flow control's observer for pool.
func (m *Metrics) Flow(pool string) flowcontrol.Observer { return &FlowMetrics{pool: pool, m: m.flow} }

// Outcome implements flowcontrol.Observer.
func (f *FlowMetrics) Outcome(priority int32, reason string, waited time.Duration) {
	p := strconv.Itoa(int(priority))
	f.m.outcomes.WithLabelValues(f.pool, p, reason).Inc()
	if waited > 0 {
		f.m.wait.WithLabelValues(f.pool, p).Observe(waited.Seconds())
	}
}

// QueueChanged implements flowcontrol.Observer.
func (f *FlowMetrics) QueueChanged(priority int32, requests int, bytes int64) {
	p := strconv.Itoa(int(priority))
	f.m.queueRequests.WithLabelValues(f.pool, p).Set(float64(requests))
	f.m.queueBytes.WithLabelValues(f.pool, p).Set(float64(bytes))
}

// PoolView is what the pool collector reads at scrape time.
type PoolView interface {
	PoolNames() []string
	Pool(name string) *datastore.Pool
	// Priorities are the pool's priority bands (0 and its objectives').
	Priorities(pool string) []int32
}

// declare makes pool's flow-control series exist for each priority band
// before anything is queued: zero queues and an empty wait histogram. An
// autoscaler or alert built on them (docs/autoscaling.md) then finds its
// series on a fresh gateway instead of "no data".
func (v *flowVecs) declare(pool string, priorities []int32) {
	for _, pr := range priorities {
		p := strconv.Itoa(int(pr))
		v.queueRequests.WithLabelValues(pool, p)
		v.queueBytes.WithLabelValues(pool, p)
		v.wait.WithLabelValues(pool, p)
	}
}

// poolCollector computes pool aggregates at scrape time from the
// datastore, so they are never staler than the endpoints' own metrics.
type poolCollector struct {
	view       PoolView
	saturation func(eps []*datastore.Endpoint, now time.Time) float64
	maxAge     time.Duration

	avgQueue, avgKV, saturated, ready *prometheus.Desc
	// The reference picker's pool metrics (upstream.go), labelled by the
	// pool's name and, per pod, by the names of its members only.
	upAvgQueue, upAvgKV, upReady, upPodQueue *prometheus.Desc
}

// RegisterPoolCollector exports, per pool: average waiting queue and KV
// utilization over ready endpoints with fresh metrics (the signals to
// autoscale model servers on; 0 while none is ready), the fraction of
// saturated endpoints, and the number of ready endpoints. Every pool's
// flow-control series exist from its first scrape, zero per priority
// band, whether or not anything was ever queued.
func (m *Metrics) RegisterPoolCollector(view PoolView, saturation func([]*datastore.Endpoint, time.Time) float64) {
	m.flow.view.Store(&view)
	m.Registry.MustRegister(&poolCollector{
		view: view, saturation: saturation, maxAge: datastore.DefaultMaxAge,
		avgQueue:  prometheus.NewDesc("igw_pool_average_queue_size", "Average waiting queue over the pool's ready endpoints with fresh metrics.", []string{"pool"}, nil),
		avgKV:     prometheus.NewDesc("igw_pool_average_kv_cache_utilization", "Average KV-cache utilization (0..1) over the pool's ready endpoints with fresh metrics.", []string{"pool"}, nil),
		saturated: prometheus.NewDesc("igw_pool_saturation", "Fraction of the pool's endpoints without headroom (1 for an empty pool).", []string{"pool"}, nil),
		ready:     prometheus.NewDesc("igw_pool_ready_endpoints", "Endpoints of the pool that are ready with fresh metrics.", []string{"pool"}, nil),

		upAvgQueue: prometheus.NewDesc("inference_pool_average_queue_size", "The average number of requests pending in the model server queue.", []string{"name"}, nil),
		upAvgKV:    prometheus.NewDesc("inference_pool_average_kv_cache_utilization", "The average kv cache utilization for an inference server pool.", []string{"name"}, nil),
		upReady:    prometheus.NewDesc("inference_pool_ready_pods", "The number of ready pods in the inference server pool.", []string{"name"}, nil),
		upPodQueue: prometheus.NewDesc("inference_pool_per_pod_queue_size", "The total number of requests pending in the model server queue for each underlying pod.", []string{"name", "model_server_pod"}, nil),
	})
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.avgQueue
	ch <- c.avgKV
	ch <- c.saturated
	ch <- c.ready
	ch <- c.upAvgQueue
	ch <- c.upAvgKV
	ch <- c.upReady
	ch <- c.upPodQueue
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	names := c.view.PoolNames()
	labels := poolLabels(names)
	for _, name := range names {
		p := c.view.Pool(name)
		if p == nil {
			continue
		}
		var queue, kv float64
		n := 0
		seen := make(map[string]bool, len(p.Endpoints))
		for _, e := range p.Endpoints {
			if !datastore.IsCandidate(e, now, c.maxAge) {
				continue
			}
			m := e.Metrics()
			queue += float64(m.WaitingQueueSize)
			kv += m.KVCacheUsage
			n++
			if pod := podName(e); !seen[pod] {
				seen[pod] = true
				ch <- prometheus.MustNewConstMetric(c.upPodQueue, prometheus.GaugeValue, float64(m.WaitingQueueSize), labels[name], pod)
			}
		}
		if n > 0 {
			queue, kv = queue/float64(n), kv/float64(n)
		}
		ch <- prometheus.MustNewConstMetric(c.avgQueue, prometheus.GaugeValue, queue, name)
		ch <- prometheus.MustNewConstMetric(c.avgKV, prometheus.GaugeValue, kv, name)
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(c.upAvgQueue, prometheus.GaugeValue, queue, labels[name])
		ch <- prometheus.MustNewConstMetric(c.upAvgKV, prometheus.GaugeValue, kv, labels[name])
		ch <- prometheus.MustNewConstMetric(c.upReady, prometheus.GaugeValue, float64(n), labels[name])
		if c.saturation != nil {
			ch <- prometheus.MustNewConstMetric(c.saturated, prometheus.GaugeValue, c.saturation(p.Endpoints, now), name)
		}
	}
}

// podName is an endpoint's model_server_pod label: its name in the pool
// (the pod, or the static endpoint's name), else its address.
func podName(e *datastore.Endpoint) string {
	if e.Name != "" {
		return e.Name
	}
	return e.Address
}
