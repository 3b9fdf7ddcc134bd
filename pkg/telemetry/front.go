package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of igw_request_body_rejections_total: why the HTTP front stopped
// reading a request body.
const (
	// BodyRejectedTimeout: the client sent its body too slowly (an idle
	// gap over the body idle timeout, or under the minimum rate).
	BodyRejectedTimeout = "timeout"
	// BodyRejectedCapacity: the bodies in flight already held the bytes
	// the gateway allows them.
	BodyRejectedCapacity = "capacity"
)

// frontVecs are the metrics of igw serve's HTTP front: the bytes request
// bodies hold while they are read, and the requests refused for how they
// sent them. A slow-body attack shows up here before it shows up anywhere
// else.
type frontVecs struct {
	bodyBytesHeld  prometheus.Gauge
	bodyRejections *prometheus.CounterVec
}

func newFrontVecs(reg prometheus.Registerer) *frontVecs {
	v := &frontVecs{
		bodyBytesHeld: prometheus.NewGauge(prometheus.GaugeOpts{Name: "igw_request_body_bytes_held",
			Help: "Bytes of buffer capacity held by request bodies in flight (igw serve), counted against spec.maxBufferedBodyBytes."}),
		bodyRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_request_body_rejections_total",
			Help: "Requests whose body the gateway stopped reading, by reason (timeout: sent too slowly, 408; capacity: the bodies in flight held too many bytes, 503)."},
			[]string{"reason"}),
	}
	reg.MustRegister(v.bodyBytesHeld, v.bodyRejections)
	return v
}

// BodyBytesHeld adjusts the bytes held by request bodies in flight by
// delta (negative when a body is released).
func (m *Metrics) BodyBytesHeld(delta int64) { m.front.bodyBytesHeld.Add(float64(delta)) }

// BodyRejected counts a request whose body was refused for reason
// (BodyRejectedTimeout or BodyRejectedCapacity).
func (m *Metrics) BodyRejected(reason string) { m.front.bodyRejections.WithLabelValues(reason).Inc() }
