package quota

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testredis"
)

// benchPolicy is a typical tenant policy: a sliding minute on requests and
// total tokens, and a day's output budget, counted per tenant and model.
func benchPolicy() []*Policy {
	return []*Policy{{Name: "default/team-a", Limits: []*Limit{
		{Name: "default/team-a/1m/requests", Scope: PerTenant | PerModel, Metric: Requests, Window: Minute, Max: 1 << 50},
		{Name: "default/team-a/1m/total_tokens", Scope: PerTenant | PerModel, Metric: TotalTokens, Window: Minute, Max: 1 << 50},
		{Name: "default/team-a/24h/output_tokens", Scope: PerTenant | PerModel, Metric: OutputTokens, Window: Day, Max: 1 << 50},
	}}}
}

// BenchmarkLimiter_MemoryAdmitSettle is the in-memory quota's cost per
// request: admission of three limits and settlement with the real usage.
func BenchmarkLimiter_MemoryAdmitSettle(b *testing.B) {
	l, _ := NewLimiter(Options{Store: NewMemoryStore()})
	pols := benchPolicy()
	id := Identity{Key: "key-1", Tenant: "team-a", Model: "llama"}
	ctx := context.Background()
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Admit(ctx, id, pols, Estimate{InputTokens: 500, MaxOutputTokens: 200}, &d)
		if err != nil || r == nil {
			b.Fatal("refused")
		}
		if err := r.Settle(ctx, 480, 150); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLimiter_MemoryAdmitSettleParallel is the same from every core,
// tenants spread over the shards.
func BenchmarkLimiter_MemoryAdmitSettleParallel(b *testing.B) {
	l, _ := NewLimiter(Options{Store: NewMemoryStore()})
	pols := benchPolicy()
	tenants := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var d Decision
		i := 0
		for pb.Next() {
			i++
			r, _ := l.Admit(ctx, Identity{Tenant: tenants[i%len(tenants)], Model: "llama"}, pols, Estimate{InputTokens: 500, MaxOutputTokens: 200}, &d)
			if r == nil {
				b.Fatal("refused")
			}
			_ = r.Settle(ctx, 480, 150)
		}
	})
}

// BenchmarkDecision_SetHeaders is the cost of the six x-ratelimit headers.
func BenchmarkDecision_SetHeaders(b *testing.B) {
	l, _ := NewLimiter(Options{Store: NewMemoryStore()})
	var d Decision
	r, _ := l.Admit(context.Background(), Identity{Tenant: "a"}, benchPolicy(), Estimate{InputTokens: 5}, &d)
	_ = r
	b.ReportAllocs()
	for b.Loop() {
		h := make(http.Header, 8)
		d.SetHeaders(h)
	}
}

// BenchmarkLimiter_RedisAdmitSettle is the Redis path over loopback: one
// EVALSHA per admission (TestRedisStore_OneRoundTripPerAdmission counts
// it); settlements pipelined in the background.
func BenchmarkLimiter_RedisAdmitSettle(b *testing.B) {
	srv := testredis.Start(b)
	store, err := NewRedisStore(RedisOptions{Addr: srv.Addr, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	l, _ := NewLimiter(Options{Store: store})
	pols := benchPolicy()
	id := Identity{Key: "key-1", Tenant: "team-a", Model: "llama"}
	ctx := context.Background()
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Admit(ctx, id, pols, Estimate{InputTokens: 500, MaxOutputTokens: 200}, &d)
		if err != nil || r == nil {
			b.Fatal("refused", err)
		}
		_ = r.Settle(ctx, 480, 150)
	}
	store.Flush()
}
