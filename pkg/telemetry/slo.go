package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// sloVecs count how streamed responses with latency objectives fared:
// the number an operator tunes the latency scorer and the admission
// ordering against. Labels are bounded: pools come from the
// configuration, objective and outcome are fixed sets.
type sloVecs struct {
	outcomes *prometheus.CounterVec
}

func newSLOVecs(reg prometheus.Registerer) *sloVecs {
	v := &sloVecs{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_slo_requests_total",
			Help: "Streamed responses with a latency objective (x-slo-ttft-ms, x-slo-tpot-ms or their InferenceObjective's), by pool, objective (ttft, tpot) and outcome (met, missed). Requests shed because the objective was unattainable are in igw_rejected_requests_total with reason rejected-slo-unattainable."},
			[]string{"pool", "objective", "outcome"}),
	}
	reg.MustRegister(v.outcomes)
	return v
}

// LatencyObjective implements director.Observer.
func (m *Metrics) LatencyObjective(pool, objective string, met bool) {
	outcome := "missed"
	if met {
		outcome = "met"
	}
	m.slo.outcomes.WithLabelValues(pool, objective, outcome).Inc()
}
