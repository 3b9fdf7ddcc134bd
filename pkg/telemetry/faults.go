package telemetry

import "github.com/prometheus/client_golang/prometheus"

// faultVecs count the model-server faults a client would otherwise not
// see the gateway handle: attempts abandoned on a timeout, and responses
// the model server cut mid-way.
type faultVecs struct {
	attemptTimeouts *prometheus.CounterVec
	streamsBroken   *prometheus.CounterVec
}

func newFaultVecs(reg prometheus.Registerer) *faultVecs {
	f := &faultVecs{
		attemptTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_attempt_timeouts_total",
			Help: "Attempts on one endpoint abandoned because it did not connect or answer in time, by pool and phase (connect, first_byte)."}, []string{"pool", "phase"}),
		streamsBroken: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_responses_broken_total",
			Help: "Responses the model server's side cut before their end (the client got an error event or a broken transfer), by pool."}, []string{"pool"}),
	}
	reg.MustRegister(f.attemptTimeouts, f.streamsBroken)
	return f
}

// AttemptTimedOut counts an attempt abandoned in phase "connect" or
// "first_byte".
func (m *Metrics) AttemptTimedOut(pool, phase string) {
	m.faults.attemptTimeouts.WithLabelValues(pool, phase).Inc()
}

// ResponseBroken counts a response cut before its end.
func (m *Metrics) ResponseBroken(pool string) { m.faults.streamsBroken.WithLabelValues(pool).Inc() }
