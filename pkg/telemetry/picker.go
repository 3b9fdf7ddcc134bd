package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a call to a remote Endpoint Picker, the values of
// igw_endpoint_picker_calls_total's outcome label.
const (
	// PickerDecided: the picker chose endpoints.
	PickerDecided = "decided"
	// PickerRejected: the picker answered with an error for the client
	// (an ImmediateResponse: shed, queue full, no endpoints...).
	PickerRejected = "rejected"
	// PickerFailedOpen and PickerFailedClosed: the picker was unreachable,
	// failed or was late, and the pool's failureMode applied.
	PickerFailedOpen   = "failed-open"
	PickerFailedClosed = "failed-closed"
)

// pickerVecs are the metrics of igw serve's calls to remote pickers: the
// operator of a pool with an endpointPickerRef must see the picker failing
// (and FailOpen hiding it from clients) and what its round trip adds.
type pickerVecs struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newPickerVecs(reg prometheus.Registerer) *pickerVecs {
	v := &pickerVecs{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_endpoint_picker_calls_total",
			Help: "Calls to a pool's remote endpoint picker, by pool and outcome (decided, rejected, failed-open, failed-closed)."},
			[]string{"pool", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "igw_endpoint_picker_duration_seconds",
			Help:    "Round trip of a remote endpoint picker's request phase (request sent to decision received), by pool.",
			Buckets: []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1}}, []string{"pool"}),
	}
	reg.MustRegister(v.calls, v.duration)
	return v
}

// PickerCall records one call to pool's remote picker; took is observed
// when the picker answered (decided or rejected).
func (m *Metrics) PickerCall(pool, outcome string, took time.Duration) {
	m.picker.calls.WithLabelValues(pool, outcome).Inc()
	if outcome == PickerDecided || outcome == PickerRejected {
		m.picker.duration.WithLabelValues(pool).Observe(took.Seconds())
	}
}
