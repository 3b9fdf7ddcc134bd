package scheduling_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

// benchSetup returns the default scheduler over a fleet of n endpoints with
// realistic metrics, its prefix index warmed by 2,000 routed requests from
// 16 conversation groups (each with a 2,000-byte shared context), and 64
// fresh 4,000-byte prompts from the same groups to schedule.
func benchSetup(b *testing.B, n int, config string) (*scheduling.Scheduler, []*datastore.Endpoint, [][]byte) {
	s, err := plugins.NewSchedulerFromYAML([]byte(config))
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
		s.ResponseComplete(ctx, r, &scheduling.Response{StatusCode: 200, Streamed: true, CompletionTokens: 100,
			FirstByte: time.Duration(20+i%50) * time.Millisecond, Duration: time.Duration(700+i%100) * time.Millisecond}, res.Primary())
	}
	prompts := make([][]byte, 64)
	for i := range prompts {
		prompts[i] = schedtest.Prompt(4000, group(i%16), 100000+i)
	}
	return s, eps, prompts
}

// latencyProfile is the default profile with the latency scorer added.
const latencyProfile = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: latency-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: latency-scorer
    weight: 3
  - pluginRef: max-score-picker
`

func benchmarkSchedule(b *testing.B, n int, withPreRequest bool) {
	benchmarkProfile(b, n, withPreRequest, "")
}

func benchmarkProfile(b *testing.B, n int, withPreRequest bool, config string) {
	s, eps, prompts := benchSetup(b, n, config)
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

// BenchmarkScheduleLatency_100Endpoints is the default profile plus the
// latency-scorer (weight 3), every endpoint's model trained. Target
// (issue 14): <= 15 µs.
func BenchmarkScheduleLatency_100Endpoints(b *testing.B) {
	benchmarkProfile(b, 100, false, latencyProfile)
}

// BenchmarkScheduleAndPreRequest_100Endpoints adds the prefix index update
// that follows every routed request.
func BenchmarkScheduleAndPreRequest_100Endpoints(b *testing.B) { benchmarkSchedule(b, 100, true) }
