// Package telemetry holds igw's Prometheus metrics: its own (what the
// gateway served — requests, latency, time to first token, tokens by model
// and pool —, where the scheduler sent requests and how long it took to
// decide, and what was rejected and why) and the reference Endpoint
// Picker's under their upstream names (upstream.go), both fed from the
// Director's Observer events; and the optional access log, one record per
// request from the same events.
package telemetry

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
)

// Metrics are the gateway's metrics, registered on their own registry so
// tests and several gateways in one process never collide.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	ttft          *prometheus.HistogramVec
	tokens        *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	schedulerTime prometheus.Histogram
	schedFailures *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	retries       *prometheus.CounterVec
	inFlight      *prometheus.GaugeVec
	flow          *flowVecs
	picker        *pickerVecs
	security      *securityVecs
	faults        *faultVecs
	resilience    *resilienceVecs
	front         *frontVecs
	slo           *sloVecs
	upstream      *upstreamVecs
	accessLog     *slog.Logger // nil: no access log
	dash          *dashboard   // what the live dashboard shows beyond the metrics
}

var _ director.Observer = (*Metrics)(nil)

// NewMetrics creates and registers every metric, plus Go runtime and
// process metrics.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	latency := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320}
	m := &Metrics{
		Registry: reg,
		dash:     newDashboard(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_requests_total",
			Help: "Inference requests answered, by requested model, pool and HTTP status."}, []string{"model", "pool", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "igw_request_duration_seconds",
			Help: "Time from request received to response complete.", Buckets: latency}, []string{"model", "pool"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "igw_request_ttft_seconds",
			Help: "Time from request received to the first response body byte (time to first token).", Buckets: latency}, []string{"model", "pool"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_tokens_total",
			Help: "Tokens reported by model servers' usage, by type (input, output, cached)."}, []string{"model", "pool", "type"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_scheduling_decisions_total",
			Help: "Scheduling decisions, by pool and chosen endpoint."}, []string{"pool", "endpoint"}),
		schedulerTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "igw_scheduler_duration_seconds",
			Help:    "Time one scheduling cycle took.",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2}}),
		schedFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_scheduling_failures_total",
			Help: "Scheduling cycles that found no endpoint, by pool."}, []string{"pool"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_rejected_requests_total",
			Help: "Requests refused before reaching a model server, by pool and reason."}, []string{"pool", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_retries_total",
			Help: "Requests retried on a fallback endpoint after failing before the first response byte."}, []string{"pool"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "igw_requests_in_flight",
			Help: "Requests being proxied, by pool."}, []string{"pool"}),
	}
	reg.MustRegister(m.requests, m.duration, m.ttft, m.tokens, m.decisions, m.schedulerTime, m.schedFailures, m.rejections, m.retries, m.inFlight)
	m.flow = newFlowVecs(reg)
	m.picker = newPickerVecs(reg)
	m.security = newSecurityVecs(reg)
	m.faults = newFaultVecs(reg)
	m.resilience = newResilienceVecs(reg)
	m.front = newFrontVecs(reg)
	m.slo = newSLOVecs(reg)
	m.upstream = newUpstreamVecs(reg)
	return m
}

// Scheduled implements director.Observer.
func (m *Metrics) Scheduled(pool string, ep *datastore.Endpoint, took time.Duration, err error) {
	m.schedulerTime.Observe(took.Seconds())
	if err != nil || ep == nil {
		m.schedFailures.WithLabelValues(pool).Inc()
		return
	}
	m.decisions.WithLabelValues(pool, ep.Address).Inc()
}

// Rejected implements director.Observer.
func (m *Metrics) Rejected(pool, _ string, r *director.Rejection) {
	m.rejections.WithLabelValues(pool, r.Reason).Inc()
}

// RequestDone implements director.Observer: it records one answered
// request in igw's metrics and the reference picker's, and writes its
// access log record when the access log is on.
func (m *Metrics) RequestDone(c *director.Completion) {
	model, pool := c.MetricModel, c.Pool
	m.requests.WithLabelValues(model, pool, strconv.Itoa(c.Status)).Inc()
	m.duration.WithLabelValues(model, pool).Observe(c.Took.Seconds())
	if c.TTFT > 0 {
		m.ttft.WithLabelValues(model, pool).Observe(c.TTFT.Seconds())
	}
	m.upstream.done(c)
	m.dash.done(c)
	if m.accessLog != nil {
		m.logAccess(c)
	}
}

// Tokens records a response's usage.
func (m *Metrics) Tokens(model, pool string, input, output, cached int) {
	if input > 0 {
		m.tokens.WithLabelValues(model, pool, "input").Add(float64(input))
	}
	if output > 0 {
		m.tokens.WithLabelValues(model, pool, "output").Add(float64(output))
	}
	if cached > 0 {
		m.tokens.WithLabelValues(model, pool, "cached").Add(float64(cached))
	}
}

// Retried records a retry on a fallback endpoint.
func (m *Metrics) Retried(pool string) { m.retries.WithLabelValues(pool).Inc() }

// InFlight implements director.Observer: it adjusts the in-flight gauges
// of pool and of model (the reference picker's running requests).
func (m *Metrics) InFlight(pool, model string, delta float64) {
	m.inFlight.WithLabelValues(pool).Add(delta)
	m.upstream.running.WithLabelValues(model).Add(delta)
}
