package bench

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func ok(id int64, stage int, start, end, ttft time.Duration, in, out, cached int, ep string) RequestResult {
	r := RequestResult{ID: id, Stage: stage, Start: start, End: end, E2E: end - start, TTFT: ttft,
		InputTokens: in, OutputTokens: out, CachedTokens: cached, UsageReported: true, Status: 200, Endpoint: ep}
	for range out - 1 {
		r.ITL = append(r.ITL, (r.E2E-ttft)/time.Duration(out-1))
	}
	finishTimes(&r)
	return r
}

func TestSummarize_Stage(t *testing.T) {
	s := time.Second
	rs := []RequestResult{
		// warm-up: excluded from stage 0's latencies, but its completion
		// inside the window counts towards the served rate.
		func() RequestResult { r := ok(0, 0, 0, 11*s, s, 100, 10, 0, "a"); r.Warmup = true; return r }(),
		ok(1, 0, 10*s, 12*s, s, 100, 10, 50, "a"),
		ok(2, 0, 11*s, 14*s, 2*s, 200, 20, 100, "b"),
		ok(3, 0, 12*s, 25*s, 3*s, 100, 10, 0, "a"), // completes after the window
		{ID: 4, Stage: 0, Status: 503, ErrorKind: ErrHTTP, Endpoint: "b"},
		{ID: 5, Stage: 0, ErrorKind: ErrTransport, TransportError: "refused"},
		{ID: 6, Stage: 0, Status: 200, ErrorKind: ErrCanceled},
		{ID: 7, Stage: 0, ErrorKind: ErrDropped},
		ok(8, 1, 21*s, 22*s, s, 100, 10, 0, ""), // another stage
	}
	w := Window{Stage: 0, Start: 10 * s, End: 20 * s, QPS: 5}
	sum := Summarize(rs, w)

	if sum.Name != "qps=5" || sum.Seconds != 10 {
		t.Errorf("name %q seconds %g", sum.Name, sum.Seconds)
	}
	if sum.Requests != 7 || sum.Succeeded != 3 || sum.Failed != 2 || sum.Canceled != 1 || sum.Dropped != 1 {
		t.Errorf("counts req %d ok %d failed %d canceled %d dropped %d, want 7/3/2/1/1", sum.Requests, sum.Succeeded, sum.Failed, sum.Canceled, sum.Dropped)
	}
	if sum.ErrorsByStatus["503"] != 1 || sum.ErrorsByKind["http"] != 1 || sum.ErrorsByKind["transport"] != 1 || sum.TransportErrors["refused"] != 1 {
		t.Errorf("errors by status %v kind %v transport %v", sum.ErrorsByStatus, sum.ErrorsByKind, sum.TransportErrors)
	}
	if _, ok := sum.ErrorsByKind["canceled"]; ok {
		t.Error("canceled counted as an error")
	}
	// Completions in [10s, 20s): #0 (warm-up, 10 out), #1, #2.
	if sum.RequestRate != 0.3 || sum.OutputTokenRate != 4 || sum.InputTokenRate != 40 || sum.OfferedRate != 0.7 {
		t.Errorf("rates req %g out %g in %g offered %g, want 0.3/4/40/0.7", sum.RequestRate, sum.OutputTokenRate, sum.InputTokenRate, sum.OfferedRate)
	}
	if sum.InputTokens != 400 || sum.OutputTokens != 40 || sum.CachedTokens != 150 || sum.CacheHitRatio != 150.0/400 {
		t.Errorf("tokens in %d out %d cached %d ratio %g", sum.InputTokens, sum.OutputTokens, sum.CachedTokens, sum.CacheHitRatio)
	}
	if sum.TTFT.Count != 3 || sum.TTFT.P50 != 2 || sum.TTFT.Max != 3 || sum.E2E.P99 != 13 {
		t.Errorf("ttft %+v e2e %+v", sum.TTFT, sum.E2E)
	}
	if sum.ITL.Count != 9+19+9 {
		t.Errorf("ITL samples %d, want 37 (pooled)", sum.ITL.Count)
	}
	// TPOT: #1 (2s−1s)/9, #2 (3s−2s)/19, #3 (13s−3s)/9.
	if math.Abs(sum.TPOT.Min-1.0/19) > 1e-6 || math.Abs(sum.TPOT.P50-1.0/9) > 1e-6 || math.Abs(sum.TPOT.Max-10.0/9) > 1e-6 {
		t.Errorf("TPOT %+v, want min 1/19, p50 1/9, max 10/9", sum.TPOT)
	}
	// Answered: #1 a, #2 b, #3 a, #4 b, #6 unknown (canceled after headers).
	want := map[string]EndpointShare{"a": {2, 0.4}, "b": {2, 0.4}, UnknownEndpoint: {1, 0.2}}
	if len(sum.Endpoints) != len(want) {
		t.Fatalf("endpoints %v, want %v", sum.Endpoints, want)
	}
	for k, v := range want {
		if sum.Endpoints[k] != v {
			t.Errorf("endpoint %s = %+v, want %+v", k, sum.Endpoints[k], v)
		}
	}
	if _, err := json.Marshal(sum); err != nil {
		t.Fatalf("summary not serializable: %v", err)
	}
}

func TestSummarizeRun_TotalSpansMeasuredWindows(t *testing.T) {
	s := time.Second
	ws := Plan(Options{Warmup: 2 * s, Stages: []Stage{stage(1, 0, 5*s), stage(0, 2, 5*s)}})
	rs := []RequestResult{
		func() RequestResult { r := ok(0, 0, 0, s, s/2, 10, 2, 0, ""); r.Warmup = true; return r }(),
		ok(1, 0, 3*s, 4*s, s/2, 10, 2, 0, ""),
		ok(2, 1, 8*s, 9*s, s/2, 10, 2, 0, ""),
	}
	stages, total := SummarizeRun(rs, ws)
	if len(stages) != 2 || stages[0].Requests != 1 || stages[1].Requests != 1 || stages[1].Name != "c=2" {
		t.Fatalf("stages %+v", stages)
	}
	if total.Stage != -1 || total.Name != "total" || total.Requests != 2 || total.Seconds != 10 || total.RequestRate != 0.2 {
		t.Fatalf("total %+v", total)
	}
}

func TestSummarize_Empty(t *testing.T) {
	sum := Summarize(nil, Window{Stage: 0, Start: 0, End: time.Second, QPS: 1})
	if sum.Requests != 0 || sum.TTFT.Count != 0 || sum.CacheHitRatio != 0 || sum.Endpoints != nil {
		t.Fatalf("empty summary %+v", sum)
	}
	if _, err := json.Marshal(sum); err != nil {
		t.Fatal(err)
	}
}
