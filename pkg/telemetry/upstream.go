package telemetry

import (
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/igw-dev/igw/pkg/director"
)

// The reference Endpoint Picker's metrics (REFERENCE §9), exported beside
// igw's own under the exact names, types and labels its Grafana dashboard,
// alerts and autoscaler rules (KEDA, HPA on pool queue size and KV
// utilization) query, so they work with igw unchanged. They are fed from
// the same Director events as the igw_* metrics.
//
// Label values are bounded: model_name and target_model_name are the
// route's or pool's models, and a model no route, rewrite or model server
// of the pool knows is reported as director.UnknownModel ("unknown");
// fairness_id takes the first maxFairnessIDs distinct values and reports
// any later one as OtherFairnessID; pools come from the configuration and
// model_server_pod only names a pool's members.

// Error codes of inference_objective_request_error_total, the reference
// picker's names for why a request failed.
const (
	ErrorBadRequest        = "BadRequest"
	ErrorResourceExhausted = "InferencePoolResourceExhausted"
	ErrorUnavailable       = "ServiceUnavailable"
	ErrorModelServer       = "ModelServerError"
	ErrorInternal          = "Internal"
)

// OtherFairnessID is the fairness_id label of flows beyond the first
// maxFairnessIDs: without authentication the fairness id is whatever a
// client sends in x-gateway-inference-fairness-id.
const OtherFairnessID = "other"

// maxFairnessIDs bounds the distinct fairness_id label values.
const maxFairnessIDs = 100

// upstreamVecs are the reference picker's request and flow-control
// metrics.
type upstreamVecs struct {
	requests, errors            *prometheus.CounterVec
	duration, ntpot             *prometheus.HistogramVec
	requestSizes, responseSizes *prometheus.HistogramVec
	inputTokens, outputTokens   *prometheus.HistogramVec
	running                     *prometheus.GaugeVec
	queueDuration               *prometheus.HistogramVec
	queueSize                   *prometheus.GaugeVec
	info                        *prometheus.GaugeVec
	fairnessMu                  sync.Mutex
	fairness                    map[string]bool
}

func newUpstreamVecs(reg prometheus.Registerer) *upstreamVecs {
	model := []string{"model_name", "target_model_name"}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, model)
	}
	sizes := prometheus.ExponentialBuckets(64, 2, 25) // 64 B .. 1 GiB
	tokens := []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576}
	v := &upstreamVecs{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_objective_request_total",
			Help: "Counter of inference objective requests broken out for each model and target model."}, model),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_objective_request_error_total",
			Help: "Counter of inference objective requests errors broken out for each model and target model."},
			[]string{"model_name", "target_model_name", "error_code"}),
		duration: hist("inference_objective_request_duration_seconds", "Inference objective response latency distribution in seconds for each model and target model.",
			[]float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}),
		ntpot: hist("inference_objective_normalized_time_per_output_token_seconds", "Inference objective latency divided by number of output tokens in seconds for each model and target model.",
			[]float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}),
		requestSizes:  hist("inference_objective_request_sizes", "Inference objective requests size distribution in bytes for each model and target model.", sizes),
		responseSizes: hist("inference_objective_response_sizes", "Inference objective responses size distribution in bytes for each model and target model.", sizes),
		inputTokens:   hist("inference_objective_input_tokens", "Inference objective input token count distribution for requests in each model.", tokens),
		outputTokens:  hist("inference_objective_output_tokens", "Inference objective output token count distribution for requests in each model.", tokens),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_objective_running_requests",
			Help: "Inference objective number of running requests in each model."}, []string{"model_name"}),
		queueDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_extension_flow_control_request_queue_duration_seconds",
			Help:    "Distribution of the total time requests spend in the flow control layer, by fairness id, priority, outcome, pool, model and target model.",
			Buckets: []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}},
			[]string{"fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"}),
		queueSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_extension_flow_control_queue_size",
			Help: "Current number of requests held in the flow control layer, by fairness id, priority, pool, model and target model."},
			[]string{"fairness_id", "priority", "inference_pool", "model_name", "target_model_name"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_extension_info",
			Help: "General information of the current build of the inference extension (igw)."}, []string{"commit", "build_ref"}),
		fairness: map[string]bool{},
	}
	commit, ref := buildInfo()
	v.info.WithLabelValues(commit, ref).Set(1)
	reg.MustRegister(v.requests, v.errors, v.duration, v.ntpot, v.requestSizes, v.responseSizes, v.inputTokens, v.outputTokens,
		v.running, v.queueDuration, v.queueSize, v.info)
	return v
}

// buildInfo is the binary's VCS revision and module version, as Go
// stamped them ("unknown" and "dev" when it did not).
func buildInfo() (commit, ref string) {
	commit, ref = "unknown", "dev"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return commit, ref
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		ref = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			commit = s.Value
		}
	}
	return commit, ref
}

// fairnessLabel folds fairness ids beyond the first maxFairnessIDs into
// OtherFairnessID.
func (v *upstreamVecs) fairnessLabel(id string) string {
	v.fairnessMu.Lock()
	defer v.fairnessMu.Unlock()
	if v.fairness[id] {
		return id
	}
	if len(v.fairness) >= maxFairnessIDs {
		return OtherFairnessID
	}
	v.fairness[id] = true
	return id
}

// done records a completed request in the reference picker's metrics:
// every request that named a model is counted; failures by error code;
// successful ones' latency, sizes and tokens.
func (v *upstreamVecs) done(c *director.Completion) {
	if c.Model == "" {
		return
	}
	m, t := c.MetricModel, c.MetricTargetModel
	v.requests.WithLabelValues(m, t).Inc()
	if code := errorCode(c); code != "" {
		v.errors.WithLabelValues(m, t, code).Inc()
		return
	}
	v.duration.WithLabelValues(m, t).Observe(c.Took.Seconds())
	v.requestSizes.WithLabelValues(m, t).Observe(float64(c.RequestBytes))
	v.responseSizes.WithLabelValues(m, t).Observe(float64(c.ResponseBytes))
	if !c.HasUsage {
		return
	}
	if c.InputTokens > 0 {
		v.inputTokens.WithLabelValues(m, t).Observe(float64(c.InputTokens))
	}
	if c.OutputTokens > 0 {
		v.outputTokens.WithLabelValues(m, t).Observe(float64(c.OutputTokens))
		v.ntpot.WithLabelValues(m, t).Observe(c.Took.Seconds() / float64(c.OutputTokens))
	}
}

// errorCode is the reference picker's error code of a failed request, ""
// for a success.
func errorCode(c *director.Completion) string {
	switch {
	case c.Status > 0 && c.Status < 400:
		return ""
	case c.FromServer:
		return ErrorModelServer
	case c.Status == http.StatusTooManyRequests:
		return ErrorResourceExhausted
	case c.Status == http.StatusServiceUnavailable || c.Status == http.StatusBadGateway || c.Status == http.StatusGatewayTimeout:
		return ErrorUnavailable
	case c.Status >= 400 && c.Status < 500 && c.Status != 499:
		return ErrorBadRequest
	}
	return ErrorInternal
}

// Queued implements director.Observer.
func (m *Metrics) Queued(e *director.FlowEntry) {
	v := m.upstream
	v.queueSize.WithLabelValues(v.fairnessLabel(e.FairnessID), e.PriorityLabel(), bareName(e.Pool), e.MetricModel, e.MetricTargetModel).Inc()
}

// Dequeued implements director.Observer.
func (m *Metrics) Dequeued(e *director.FlowEntry, outcome string, waited time.Duration) {
	v := m.upstream
	f, p := v.fairnessLabel(e.FairnessID), e.PriorityLabel()
	pool := bareName(e.Pool)
	v.queueSize.WithLabelValues(f, p, pool, e.MetricModel, e.MetricTargetModel).Dec()
	v.queueDuration.WithLabelValues(f, p, outcome, pool, e.MetricModel, e.MetricTargetModel).Observe(waited.Seconds())
}

// poolLabels are the reference picker's pool label values (its name
// label): a pool's name without its namespace, as one picker per pool
// names it, unless two pools share that name, which keep
// "namespace/name".
func poolLabels(names []string) map[string]string {
	count := make(map[string]int, len(names))
	for _, n := range names {
		count[bareName(n)]++
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		if b := bareName(n); count[b] == 1 {
			out[n] = b
		} else {
			out[n] = n
		}
	}
	return out
}

func bareName(pool string) string {
	if i := strings.LastIndexByte(pool, '/'); i >= 0 {
		return pool[i+1:]
	}
	return pool
}
