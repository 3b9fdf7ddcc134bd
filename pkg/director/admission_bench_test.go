package director

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

// Admission cost on a pool that is not saturated (issue 6 target: under
// 5 µs per request). The benchmarks use the real datastore, the real
// saturation detector and the Director's own headroom function over 25
// endpoints, so what they measure is exactly what Decide adds before
// scheduling.
//
//	go test -run '^$' -bench 'Admission|DecideUnsaturated' -benchmem ./pkg/director/

const benchEndpoints = 25

// benchDirector builds a Director over one pool of n ready endpoints with
// fresh metrics; saturated(i) says which endpoints are past the queue
// threshold. Metrics are stamped an hour ahead so they stay fresh however
// long the benchmark runs.
func benchDirector(tb testing.TB, n int, saturated func(i int) bool) *Director {
	tb.Helper()
	store := datastore.NewStore(nil)
	specs := make([]datastore.EndpointSpec, n)
	for i := range specs {
		a := fmt.Sprintf("10.0.0.%d:8000", i+1)
		specs[i] = datastore.EndpointSpec{Name: a, Address: a}
	}
	store.SetPool(testPool, specs)
	for i, ep := range store.Pool(testPool).Endpoints {
		m := datastore.Metrics{UpdateTime: time.Now().Add(time.Hour), KVCacheUsage: 0.3, RunningRequests: 4}
		if saturated(i) {
			m.WaitingQueueSize = 8
		}
		ep.SetMetrics(&m)
		ep.SetReady(true)
	}
	sched, err := scheduling.NewScheduler(nil, plugins.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	d, err := New(Options{Store: store, Scheduler: sched})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// BenchmarkAdmission is Controller.Admit with the Director's headroom over
// 25 endpoints: the best case (the first endpoint has headroom) and the
// worst case of an unsaturated pool (only the last one has).
func BenchmarkAdmission(b *testing.B) {
	for _, bc := range []struct {
		name      string
		saturated func(int) bool
	}{
		{"headroom-first", func(int) bool { return false }},
		{"headroom-last-of-25", func(i int) bool { return i < benchEndpoints-1 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := benchDirector(b, benchEndpoints, bc.saturated)
			flow := d.flowController(testPool)
			ctx := context.Background()
			req := flowcontrol.Request{FairnessID: "tenant-a", Priority: 0, Bytes: 512}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := flow.Admit(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAdmissionParallel is the best case under concurrent callers:
// the fast path takes no lock.
func BenchmarkAdmissionParallel(b *testing.B) {
	d := benchDirector(b, benchEndpoints, func(i int) bool { return i < benchEndpoints-1 })
	flow := d.flowController(testPool)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := flowcontrol.Request{FairnessID: "tenant-a", Bytes: 512}
		for pb.Next() {
			if err := flow.Admit(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecideUnsaturated is a whole Decide (admission plus scheduling
// with the default profile) over the same 25 endpoints, to put the
// admission step in proportion.
func BenchmarkDecideUnsaturated(b *testing.B) {
	d := benchDirector(b, benchEndpoints, func(int) bool { return false })
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Summarize the admission path of an inference gateway in one line."}],"max_tokens":8}`)
	parsed, err := openai.ParseRequest(openai.KindChat, body)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := d.Decide(ctx, &Request{Pool: testPool, Parsed: parsed, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}
