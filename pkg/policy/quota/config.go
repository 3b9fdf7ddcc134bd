package quota

import (
	"fmt"
	"log/slog"

	"github.com/igw-dev/igw/pkg/config"
)

// PoliciesFromConfig builds a Policy for every QuotaPolicy, keyed by the
// configuration object (auth.Identity.Quotas holds them). Each window
// of a policy becomes one Limit per metric it sets, named
// "<namespace>/<policy>/<window>/<metric>" (e.g.
// "default/team-a/1m/total_tokens"): the name is the counter's identity in
// the stores, so counters survive reloads that keep it, and it is the
// limit label of igw_quota_rejections_total.
func PoliciesFromConfig(qs []*QuotaPolicy) (map[config.Object]*Policy, error) {
	out := make(map[config.Object]*Policy, len(qs))
	for _, q := range qs {
		s := &q.Spec
		p := &Policy{Name: q.Namespace + "/" + q.Name, Models: s.Models}
		if s.DefaultOutputTokens != nil {
			p.DefaultOutputTokens = int64(*s.DefaultOutputTokens)
		}
		if s.Stream == QuotaStreamCut {
			p.Stream = StreamCut
		}
		scope := PerTenant
		if s.Scope == QuotaScopeKey {
			scope = PerKey
		}
		if s.PerModel {
			scope |= PerModel
		}
		for _, l := range s.Limits {
			w := WindowOf(l.Window.Duration)
			for _, m := range []struct {
				metric Metric
				max    *int64
			}{{Requests, l.Requests}, {InputTokens, l.InputTokens}, {OutputTokens, l.OutputTokens}, {TotalTokens, l.TotalTokens}} {
				if m.max == nil {
					continue
				}
				p.Limits = append(p.Limits, &Limit{
					Name:   fmt.Sprintf("%s/%s/%s", p.Name, w, m.metric),
					Scope:  scope,
					Metric: m.metric,
					Window: w,
					Max:    *m.max,
				})
			}
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("QuotaPolicy %s: %w", p.Name, err)
		}
		out[q] = p
	}
	return out, nil
}

// StoreFromConfig opens the store a QuotaStore describes: a MemoryStore,
// or a RedisStore behind a Failover with the configured failure mode. The
// returned close function releases it (nil for memory).
func StoreFromConfig(spec *QuotaStoreSpec, log *slog.Logger, m *Metrics) (Store, func() error, error) {
	if spec == nil || spec.Type != QuotaStoreRedis {
		return NewMemoryStore(), nil, nil
	}
	r := spec.Redis
	if r == nil {
		return nil, nil, fmt.Errorf("quota: QuotaStore of type %s without spec.redis", QuotaStoreRedis)
	}
	o := RedisOptions{Addr: r.Address, KeyPrefix: r.KeyPrefix, DB: int(r.DB), Metrics: m}
	if r.Timeout != nil {
		o.Timeout = r.Timeout.Duration
	}
	rs, err := NewRedisStore(o)
	if err != nil {
		return nil, nil, err
	}
	mode := FailOpen
	if spec.FailureMode == QuotaFailClose {
		mode = FailClosed
	}
	f, err := NewFailover(rs, FailoverOptions{Mode: mode, Logger: log, Metrics: m})
	if err != nil {
		_ = rs.Close()
		return nil, nil, err
	}
	return f, f.Close, nil
}
