package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// resilienceVecs are the metrics of outlier detection and the retry
// budget. Their labels are bounded: pools and URL backends come from the
// configuration, and an endpoint label only ever names a member of its
// pool.
type resilienceVecs struct {
	ejections   *prometheus.CounterVec
	ejected     *prometheus.GaugeVec
	retryDenied *prometheus.CounterVec
	readmitted  *prometheus.CounterVec
}

func newResilienceVecs(reg prometheus.Registerer) *resilienceVecs {
	v := &resilienceVecs{
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_outlier_ejections_total",
			Help: "Endpoints ejected by outlier detection (consecutive 5xx, connection errors or timeouts), by pool and endpoint; a failed half-open probe counts again."},
			[]string{"pool", "endpoint"}),
		ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "igw_outlier_ejected_endpoints",
			Help: "Endpoints currently out of the candidate set by outlier detection (ejected or half-open), by pool."},
			[]string{"pool"}),
		retryDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_retries_denied_total",
			Help: "Retries the pool's retry budget refused (the client got the failure as it was), by pool."},
			[]string{"pool"}),
		readmitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_readmissions_total",
			Help: "Requests sent back through admission after a model server refused them for lack of room (429, 500 or 503 while busy), by pool."},
			[]string{"pool"}),
	}
	reg.MustRegister(v.ejections, v.ejected, v.retryDenied, v.readmitted)
	return v
}

// Ejected implements director.Observer (outlier.Observer).
func (m *Metrics) Ejected(pool, endpoint string) {
	m.resilience.ejections.WithLabelValues(pool, endpoint).Inc()
}

// EjectedEndpoints implements director.Observer (outlier.Observer).
func (m *Metrics) EjectedEndpoints(pool string, n int) {
	m.resilience.ejected.WithLabelValues(pool).Set(float64(n))
}

// RetryDenied implements director.Observer.
func (m *Metrics) RetryDenied(pool string) { m.resilience.retryDenied.WithLabelValues(pool).Inc() }

// Readmitted implements director.Observer.
func (m *Metrics) Readmitted(pool string) { m.resilience.readmitted.WithLabelValues(pool).Inc() }
