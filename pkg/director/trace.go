package director

import (
	"cmp"
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Span names of a traced request: the request's own span, and its
// children for each step of the lifecycle (docs/observability.md).
const (
	SpanRequest    = "igw.request"
	SpanParse      = "igw.parse"
	SpanAdmission  = "igw.admission"
	SpanSchedule   = "igw.schedule"
	SpanUpstream   = "igw.upstream"
	SpanFirstByte  = "igw.first_byte"
	SpanCompletion = "igw.completion"
)

// maxTracedCandidates bounds the candidates whose scores a scheduling
// span carries, so a large pool does not make every span large.
const maxTracedCandidates = 3

// traceContext is W3C Trace Context (traceparent, tracestate): how a
// request's trace arrives from a client or from Envoy, and how it leaves
// for the model server.
type traceContext = propagation.TraceContext

// headerCarrier adapts http.Header to the propagator.
type headerCarrier = propagation.HeaderCarrier

// requestTrace is the spans of one traced request. An Exchange of a
// Director without a tracer, or of a request the sampler dropped, has none:
// every tracing step is one nil check.
type requestTrace struct {
	tracer     trace.Tracer
	ctx        context.Context // carries root
	root       trace.Span
	attempt    trace.Span // the current upstream attempt; nil between attempts
	addr       string     // the current attempt's endpoint
	attemptCtx context.Context
	attempts   int
	firstByte  trace.Span // open from an attempt's start to its first response byte
	completion trace.Span // open from the first response byte to the end
}

// startTrace starts the request's span, a child of the trace the request
// carries (traceparent from a client or Envoy), or a new trace. It returns
// nil when the sampler drops the request.
func (d *Director) startTrace(ctx context.Context, in *Inbound, start time.Time) *requestTrace {
	ctx = traceContext{}.Extract(ctx, headerCarrier(in.Header))
	ctx, root := d.tracer.Start(ctx, SpanRequest, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("http.request.method", in.Method), attribute.String("url.path", in.Path)))
	if !root.IsRecording() {
		return nil
	}
	return &requestTrace{tracer: d.tracer, ctx: ctx, root: root}
}

// step records a finished step of the lifecycle as a child span of the
// request, from start to end.
func (t *requestTrace) step(name string, start, end time.Time, attrs ...attribute.KeyValue) trace.Span {
	_, s := t.tracer.Start(t.ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	s.End(trace.WithTimestamp(end))
	return s
}

// tracedStep is the request's trace when ctx carries one (Decide is
// called from Begin with the request's context).
func tracedStep(ctx context.Context) *requestTrace {
	t, _ := ctx.Value(requestTraceKey{}).(*requestTrace)
	return t
}

type requestTraceKey struct{}

// admission records the request's stay in flow control.
func (t *requestTrace) admission(arrived time.Time, e *FlowEntry, outcome string) {
	t.step(SpanAdmission, arrived, time.Now(),
		attribute.Int("igw.priority", int(e.Priority)), attribute.String("igw.fairness_id", e.FairnessID),
		attribute.String("igw.outcome", outcome), attribute.String("igw.pool", e.Pool))
}

// schedule records a scheduling cycle: the chosen endpoint and the scores
// of the best candidates (from the scheduler's explanation).
func (t *requestTrace) schedule(start time.Time, primary string, ex *scheduling.Explanation, err error) {
	attrs := []attribute.KeyValue{attribute.String("igw.endpoint", primary)}
	if ex != nil {
		for _, p := range ex.Profiles {
			if p.Profile != ex.Primary {
				continue
			}
			best := slices.Clone(p.Candidates)
			slices.SortStableFunc(best, func(a, b scheduling.CandidateExplanation) int { return cmp.Compare(b.Total, a.Total) })
			for i, c := range best[:min(len(best), maxTracedCandidates)] {
				prefix := "igw.candidate." + strconv.Itoa(i) + "."
				attrs = append(attrs, attribute.String(prefix+"endpoint", c.Endpoint), attribute.Float64(prefix+"score", c.Total),
					attribute.Float64Slice(prefix+"scores", c.Scores))
			}
			scorers := make([]string, len(p.Scorers))
			for i, s := range p.Scorers {
				scorers[i] = s.Scorer
			}
			attrs = append(attrs, attribute.String("igw.profile", p.Profile), attribute.StringSlice("igw.scorers", scorers))
		}
	}
	s := t.step(SpanSchedule, start, time.Now(), attrs...)
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
}

// startAttempt opens the span of an attempt on addr and returns the
// traceparent to send the model server, so its spans join the trace.
// It returns nil when addr is the current attempt's endpoint (Envoy
// confirming the endpoint it was told).
func (t *requestTrace) startAttempt(addr string) http.Header {
	if t.attempt != nil && t.addr == addr {
		return nil
	}
	t.endAttempt(0, errNotServed)
	t.attempts++
	t.addr = addr
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		host = addr
	}
	now := time.Now()
	attrs := []attribute.KeyValue{attribute.String("server.address", host), attribute.Int("igw.attempt", t.attempts)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, attribute.Int("server.port", p))
	}
	t.attemptCtx, t.attempt = t.tracer.Start(t.ctx, SpanUpstream, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(now), trace.WithAttributes(attrs...))
	_, t.firstByte = t.tracer.Start(t.attemptCtx, SpanFirstByte, trace.WithTimestamp(now))
	h := http.Header{}
	traceContext{}.Inject(t.attemptCtx, headerCarrier(h))
	return h
}

// gotFirstByte ends the wait for the first response byte and starts the
// completion: the response streaming back.
func (t *requestTrace) gotFirstByte() {
	if t.firstByte == nil || t.attempt == nil {
		return
	}
	now := time.Now()
	t.firstByte.End(trace.WithTimestamp(now))
	t.firstByte = nil
	_, t.completion = t.tracer.Start(t.attemptCtx, SpanCompletion, trace.WithTimestamp(now))
}

// endAttempt closes the current attempt's spans with the status the model
// server answered (0: none) and why it ended early (nil: it did not).
func (t *requestTrace) endAttempt(status int, err error) {
	if t.attempt == nil {
		return
	}
	for _, s := range []trace.Span{t.firstByte, t.completion} {
		if s != nil {
			s.End()
		}
	}
	t.firstByte, t.completion = nil, nil
	if status != 0 {
		t.attempt.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if err != nil {
		t.attempt.SetStatus(codes.Error, err.Error())
	} else if status >= 500 {
		t.attempt.SetStatus(codes.Error, http.StatusText(status))
	}
	t.attempt.End()
	t.attempt = nil
}

// end closes the request's span with what it came to: the GenAI
// semantic-convention attributes and the status the client got.
func (t *requestTrace) end(x *Exchange, c *Completion, err error) {
	t.endAttempt(x.status, err)
	attrs := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", genAIOperation(x.Parsed)),
		attribute.Int("http.response.status_code", c.Status),
		attribute.Int("igw.retries", x.retries),
	}
	if x.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", x.Model))
	}
	if x.status != 0 && x.TargetModel() != "" && x.obs != nil {
		attrs = append(attrs, attribute.String("gen_ai.response.model", x.TargetModel()))
	}
	if x.obs != nil {
		attrs = append(attrs, attribute.Int("gen_ai.usage.input_tokens", c.InputTokens), attribute.Int("gen_ai.usage.output_tokens", c.OutputTokens))
	}
	if x.served != "" {
		host, port, _ := net.SplitHostPort(x.served)
		if host == "" {
			host = x.served
		}
		attrs = append(attrs, attribute.String("server.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	if pool := x.Pool(); pool != "" {
		attrs = append(attrs, attribute.String("igw.pool", pool))
	}
	if x.reason != "" {
		attrs = append(attrs, attribute.String("igw.dropped_reason", x.reason))
	}
	if x.dreq != nil {
		attrs = append(attrs, attribute.String("igw.request_id", x.dreq.ID))
	}
	t.root.SetAttributes(attrs...)
	switch {
	case err != nil:
		t.root.SetStatus(codes.Error, err.Error())
	case c.Status >= 500:
		t.root.SetStatus(codes.Error, http.StatusText(c.Status))
	}
	t.root.End()
}
