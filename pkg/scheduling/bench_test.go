package scheduling_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

// benchSetup returns the default scheduler over a fleet of n endpoints with
// realistic metrics, its prefix index warmed by 2,000 routed requests from
// 16 conversation groups (each with a 2,000-byte shared context), and 64
// fresh 4,000-byte prompts from the same groups to schedule.
func benchSetup(b *testing.B, n int) (*scheduling.Scheduler, []*datastore.Endpoint, [][]byte) {
	s, err := plugins.NewDefaultScheduler()
	if err != nil {
		b.Fatal(err)
	}
	eps := schedtest.Fleet(n, 42)
	group := func(g int) string {
		return strings.Repeat(fmt.Sprintf("Shared context of conversation group %d. ", g), 50)[:2000]
	}
	ctx := context.Background()
	for i := range 2000 {
		r := &scheduling.Request{Model: "llama-3-8b", Prompt: schedtest.Prompt(4000, group(i%16), i)}
		res, err := s.Schedule(ctx, r, eps)
		if err != nil {
			b.Fatal(err)
		}
		s.PreRequest(ctx, r, res, res.Primary())
	}
	prompts := make([][]byte, 64)
	for i := range prompts {
		prompts[i] = schedtest.Prompt(4000, group(i%16), 100000+i)
	}
	return s, eps, prompts
}

func benchmarkSchedule(b *testing.B, n int, withPreRequest bool) {
	s, eps, prompts := benchSetup(b, n)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := &scheduling.Request{Model: "llama-3-8b", Prompt: prompts[i%len(prompts)]}
		res, err := s.Schedule(ctx, r, eps)
		if err != nil {
			b.Fatal(err)
		}
		if withPreRequest {
			s.PreRequest(ctx, r, res, res.Primary())
		}
		i++
	}
}

// BenchmarkSchedule_25Endpoints is one decision of the default profile
// (queue 2, kv-cache 2, prefix 3, max-score picker, 2 fallbacks) for a
// 4,000-byte prompt over 25 endpoints. Target: <= 25 µs.
func BenchmarkSchedule_25Endpoints(b *testing.B) { benchmarkSchedule(b, 25, false) }

// BenchmarkSchedule_100Endpoints is the same over 100 endpoints. Target:
// <= 60 µs.
func BenchmarkSchedule_100Endpoints(b *testing.B) { benchmarkSchedule(b, 100, false) }

// BenchmarkScheduleAndPreRequest_100Endpoints adds the prefix index update
// that follows every routed request.
func BenchmarkScheduleAndPreRequest_100Endpoints(b *testing.B) { benchmarkSchedule(b, 100, true) }
