package quota

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"sync"

	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
)

// Reasons in x-gateway-request-dropped-reason for requests the quotas
// refused.
const (
	DroppedReasonQuotaExceeded    = "rejected-quota-exceeded"
	DroppedReasonQuotaUnavailable = "rejected-quota-unavailable"
)

// admission is the director.Admission of token quotas: every QuotaPolicy
// the caller's credential names is charged, at admission with the estimate
// and at release with the real usage.
type admission struct {
	policies map[config.Object]*Policy
	limiter  *Limiter
	metrics  *Metrics
	shared   *quotaStore
	// decisions recycles Decisions and their usage slices, which are
	// otherwise allocated per request.
	decisions sync.Pool
}

var (
	_ director.Admission = (*admission)(nil)
	_ io.Closer          = (*admission)(nil)
)

// quotaStore is a store shared by the Admissions of successive
// configurations while the QuotaStore spec does not change, so counters
// and connections survive reloads. It is closed when its last user is.
type quotaStore struct {
	spec  QuotaStoreSpec
	store Store
	close func() error

	mu    sync.Mutex
	users int
}

func (q *quotaStore) release() {
	q.mu.Lock()
	q.users--
	last := q.users == 0
	q.mu.Unlock()
	if last && q.close != nil {
		_ = q.close()
	}
}

// Admissions builds the token-quota Admission of each configuration and
// keeps what outlives configurations: the metrics, registered once on the
// engine's registry, and the store while its spec does not change.
type Admissions struct {
	log *slog.Logger
	reg prometheus.Registerer

	mu      sync.Mutex
	metrics *Metrics
}

// NewAdmissions registers nothing until a configuration has quotas.
func NewAdmissions(reg prometheus.Registerer, log *slog.Logger) *Admissions {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admissions{log: log, reg: reg}
}

// Build is the Admission of cfg: nil without QuotaPolicies; otherwise the
// policies over the configured store, which is kept from prev when its spec
// is unchanged. A replaced Admission is closed with Close (io.Closer) by
// whoever swapped it out; requests in flight may still Release on it.
func (a *Admissions) Build(cfg *config.Config, prev director.Admission) (director.Admission, error) {
	qs := Policies(cfg)
	if len(qs) == 0 {
		return nil, nil
	}
	policies, err := PoliciesFromConfig(qs)
	if err != nil {
		return nil, err
	}
	m, err := a.metricsOnce()
	if err != nil {
		return nil, err
	}
	var spec QuotaStoreSpec
	if qs := StoreConfig(cfg); qs != nil {
		spec = qs.Spec
	}
	var shared *quotaStore
	if p, ok := prev.(*admission); ok && reflect.DeepEqual(p.shared.spec, spec) {
		shared = p.shared
	} else {
		store, closeFn, err := StoreFromConfig(&spec, a.log, m)
		if err != nil {
			return nil, err
		}
		shared = &quotaStore{spec: spec, store: store, close: closeFn}
	}
	shared.mu.Lock()
	shared.users++
	shared.mu.Unlock()
	l, err := NewLimiter(Options{Store: shared.store, Metrics: m})
	if err != nil {
		shared.release()
		return nil, err
	}
	adm := &admission{policies: policies, limiter: l, metrics: m, shared: shared}
	adm.decisions.New = func() any { return new(Decision) }
	return adm, nil
}

// metricsOnce registers the quota metrics the first time a configuration
// has quotas.
func (a *Admissions) metricsOnce() (*Metrics, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.metrics == nil {
		m, err := NewMetrics(a.reg)
		if err != nil {
			return nil, err
		}
		a.metrics = m
	}
	return a.metrics, nil
}

// Close releases the store (closed when no later configuration uses it).
func (a *admission) Close() error {
	a.shared.release()
	return nil
}

// maxPoliciesPerRequest bounds the QuotaPolicies one credential names that
// are looked up without allocating.
const maxPoliciesPerRequest = 16

// Admit reserves the request's estimated cost against the policies of its
// credential.
func (a *admission) Admit(ctx context.Context, req *director.AdmissionRequest) (*director.Admitted, *director.Refusal) {
	id := req.Identity
	if id == nil || len(id.Quotas) == 0 {
		return nil, nil
	}
	var buf [maxPoliciesPerRequest]*Policy
	policies := buf[:0]
	for _, q := range id.Quotas {
		if p := a.policies[q]; p != nil {
			policies = append(policies, p)
		}
	}
	est := Estimate{InputTokens: int64(req.PromptTokens), MaxOutputTokens: int64(req.Parsed.MaxTokens)}
	d := a.decisions.Get().(*Decision)
	defer a.decisions.Put(d)
	res, err := a.limiter.Admit(ctx, Identity{Key: id.Subject, Tenant: id.Tenant, Model: req.Parsed.Model}, policies, est, d)
	if err != nil {
		msg := "the quota store is unavailable; try again later"
		if !errors.Is(err, ErrUnavailable) {
			msg = "the quota store failed: " + err.Error()
		}
		return nil, &director.Refusal{
			Err:    openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable, msg),
			Header: http.Header{"Retry-After": {"1"}},
			Reason: DroppedReasonQuotaUnavailable,
		}
	}
	h := make(http.Header, 7)
	d.SetHeaders(h)
	if !d.Admitted {
		return nil, &director.Refusal{
			Err:    openai.NewError(http.StatusTooManyRequests, openai.ErrTypeRateLimit, d.Message()),
			Header: h,
			Reason: DroppedReasonQuotaExceeded,
		}
	}
	if res == nil { // no policy applies to this model
		return nil, nil
	}
	var meter *StreamBody
	adm := &director.Admitted{Header: h}
	if req.Parsed.Stream {
		adm.WrapBody = func(body io.ReadCloser) io.ReadCloser {
			meter = NewStreamBody(ctx, body, res, a.metrics)
			return meter
		}
	}
	adm.Release = func(usage openai.Usage, status int) {
		input, output := settlement(res, meter, usage, status)
		// The memory store does not wait; the Redis store queues the
		// settlement, or sends it under its own timeout, detached from the
		// request (whose client may be gone). Failures are counted in
		// igw_quota_store_errors_total.
		_ = res.Settle(ctx, input, output)
	}
	return adm, nil
}

// settlement is what a finished request is charged: the server's usage
// when it sent one; otherwise the estimated input and the output counted in
// the stream, or, for a successful response that could not be metered (not
// a stream, no usage), the output reserved.
func settlement(res *Reservation, meter *StreamBody, usage openai.Usage, status int) (input, output int64) {
	if usage.PromptTokens > 0 || usage.CompletionTokens > 0 {
		in, out := int64(usage.PromptTokens), int64(usage.CompletionTokens)
		if meter != nil {
			out = max(out, meter.OutputTokens())
		}
		return in, out
	}
	input = res.InputEstimate()
	switch {
	case meter != nil:
		output = meter.OutputTokens()
	case status >= 200 && status < 300:
		output = res.ReservedOutput()
	}
	return input, output
}
