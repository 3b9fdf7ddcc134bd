package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// GenAITokenUsage is the OpenTelemetry GenAI semantic-conventions metric
// gen_ai.client.token.usage in Prometheus form: a histogram of tokens per
// request (unit {token}), by gen_ai.token.type (input, output),
// gen_ai.request.model and gen_ai.operation.name, plus the tenant igw
// authenticated. The conventions define it as a histogram, not a counter,
// so that the distribution of request sizes is kept; totals per tenant
// and model are its _sum series. The buckets are the ones the conventions
// recommend.
const GenAITokenUsage = "gen_ai_client_token_usage"

// securityVecs are the metrics of authentication, the request guard and
// per-tenant token usage.
type securityVecs struct {
	tokenUsage     *prometheus.HistogramVec
	authRejections *prometheus.CounterVec
	guardHits      *prometheus.CounterVec
}

func newSecurityVecs(reg prometheus.Registerer) *securityVecs {
	v := &securityVecs{
		tokenUsage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: GenAITokenUsage,
			Help:    "Tokens used per request ({token}), by tenant, model, operation and token type (input, output), as the model servers reported them.",
			Buckets: []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}},
			[]string{"tenant", "gen_ai_request_model", "gen_ai_operation_name", "gen_ai_token_type"}),
		authRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_auth_rejections_total",
			Help: "Requests refused by authentication, by reason (missing, invalid_key, invalid_token, expired_token, model_not_allowed, objective_not_allowed)."},
			[]string{"reason"}),
		guardHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "igw_guard_hits_total",
			Help: "Request guard rule hits, by guard (namespace/name), rule and mode (block: rejected, log: let through, clamp: max_tokens lowered)."},
			[]string{"guard", "rule", "mode"}),
	}
	reg.MustRegister(v.tokenUsage, v.authRejections, v.guardHits)
	return v
}

// TokenUsage records one response's usage for its tenant ("" when
// authentication is off). operation is the GenAI operation name: chat,
// text_completion, embeddings or responses.
func (m *Metrics) TokenUsage(tenant, model, operation string, input, output int) {
	if input > 0 {
		m.security.tokenUsage.WithLabelValues(tenant, model, operation, "input").Observe(float64(input))
	}
	if output > 0 {
		m.security.tokenUsage.WithLabelValues(tenant, model, operation, "output").Observe(float64(output))
	}
}

// AuthRejected counts a request refused by authentication.
func (m *Metrics) AuthRejected(reason string) {
	m.security.authRejections.WithLabelValues(reason).Inc()
}

// GuardHit counts a request guard rule hit; it implements guard.Observer.
func (m *Metrics) GuardHit(guard, rule, mode string) {
	m.security.guardHits.WithLabelValues(guard, rule, mode).Inc()
}
