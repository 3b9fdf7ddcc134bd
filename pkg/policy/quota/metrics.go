package quota

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the quota's Prometheus metrics. They live here, beside the
// code that knows what to count (as a CoreDNS plugin keeps its metrics.go),
// and are registered on the gateway's registry.
type Metrics struct {
	rejections   *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	fallback     prometheus.Gauge
	unavailable  prometheus.Counter
	tokens       *prometheus.CounterVec
	streamCuts   prometheus.Counter
	reservations prometheus.Counter

	// The token counters, resolved once so the hot path does no label
	// lookups.
	reservedIn, reservedOut, actualIn, actualOut prometheus.Counter
}

// NewMetrics creates the quota metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_quota_rejections_total",
			Help: "Requests refused with 429 by a token or request quota, by the refusing limit, its metric and window."},
			[]string{"limit", "metric", "window"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_quota_store_errors_total",
			Help: "Failed calls to the shared quota store (Redis), by operation (admit, extend, settle, probe)."},
			[]string{"op"}),
		fallback: prometheus.NewGauge(prometheus.GaugeOpts{Name: "igw_quota_fallback_active",
			Help: "1 while the shared quota store is unreachable and this replica applies its fallback mode (local limits or 503)."}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{Name: "igw_quota_unavailable_total",
			Help: "Requests refused with 503 because the shared quota store was unreachable in closed mode."}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_quota_tokens_total",
			Help: "Tokens reserved at admission and actually used at settlement, by kind (reserved, actual) and type (input, output); their ratio shows how much estimation over-reserves."},
			[]string{"kind", "type"}),
		streamCuts: prometheus.NewCounter(prometheus.CounterOpts{Name: "igw_quota_stream_cuts_total",
			Help: "Streamed responses ended with an error event because their output outgrew the remaining budget (policy cut)."}),
		reservations: prometheus.NewCounter(prometheus.CounterOpts{Name: "igw_quota_reservations_total",
			Help: "Requests admitted by the quota (each holds a reservation until settled)."}),
	}
	m.reservedIn, m.reservedOut = m.tokens.WithLabelValues("reserved", "input"), m.tokens.WithLabelValues("reserved", "output")
	m.actualIn, m.actualOut = m.tokens.WithLabelValues("actual", "input"), m.tokens.WithLabelValues("actual", "output")
	for _, c := range []prometheus.Collector{m.rejections, m.storeErrors, m.fallback, m.unavailable, m.tokens, m.streamCuts, m.reservations} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("quota: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) rejected(l *Limit) {
	if m == nil || l == nil {
		return
	}
	m.rejections.WithLabelValues(l.Name, l.Metric.String(), l.Window.String()).Inc()
}

func (m *Metrics) storeError(op string, err error) {
	if m == nil || err == nil || errors.Is(err, ErrUnavailable) {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

func (m *Metrics) setFallback(active bool) {
	if m == nil {
		return
	}
	if active {
		m.fallback.Set(1)
	} else {
		m.fallback.Set(0)
	}
}

func (m *Metrics) refusedUnavailable() {
	if m != nil {
		m.unavailable.Inc()
	}
}

func (m *Metrics) reserved(c Cost) {
	if m == nil {
		return
	}
	if c[Requests] > 0 {
		m.reservations.Inc()
	}
	m.reservedIn.Add(float64(c[InputTokens]))
	m.reservedOut.Add(float64(c[OutputTokens]))
}

func (m *Metrics) settled(_, actual Cost) {
	if m == nil {
		return
	}
	m.actualIn.Add(float64(actual[InputTokens]))
	m.actualOut.Add(float64(actual[OutputTokens]))
}

// StreamCut counts a stream ended by policy cut.
func (m *Metrics) StreamCut() {
	if m != nil {
		m.streamCuts.Inc()
	}
}
