package bench

import (
	"slices"
	"strconv"
	"time"
)

// UnknownEndpoint is the key of Summary.Endpoints for responses that did not
// name their endpoint (HeaderEndpointServed absent, as when the target is a
// model server itself).
const UnknownEndpoint = "unknown"

// Summary condenses one stage (or the whole run) into the figures a report
// compares: latency percentiles, throughput, errors, endpoint spread and
// prefix-cache hits.
//
// Latencies are over the successful requests that arrived in the stage
// (the load they met is the stage's). Rates are over the stage's window:
// RequestRate, OutputTokenRate and InputTokenRate count the successful
// requests that completed inside the window, whichever stage sent them, so
// a saturated target shows the rate it actually served rather than what
// was asked of it; OfferedRate is the arrivals the stage generated.
type Summary struct {
	// Stage is the stage index, -1 for the total.
	Stage int `json:"stage"`
	// Name labels the stage in tables ("qps=16", "c=8", "total").
	Name string `json:"name"`
	// QPS or Concurrency is the stage's load, the x axis of charts.
	QPS         float64 `json:"qps,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	// Seconds is the window's length.
	Seconds float64 `json:"seconds"`

	// Requests counts arrivals (sent or dropped) in the stage; Succeeded +
	// Failed + Canceled + Dropped = Requests.
	Requests  int `json:"requests"`
	Succeeded int `json:"succeeded"`
	// Failed counts errors: ErrHTTP, ErrTransport, ErrStream, ErrTimeout.
	Failed int `json:"failed"`
	// Canceled and Dropped are the benchmark's own doing, not the
	// target's, and are kept out of Failed.
	Canceled int `json:"canceled"`
	Dropped  int `json:"dropped"`
	// ErrorsByStatus counts ErrHTTP failures by HTTP status (as a string,
	// for JSON).
	ErrorsByStatus map[string]int `json:"errors_by_status,omitempty"`
	// ErrorsByKind counts failures by ErrorKind (http, transport, stream,
	// timeout).
	ErrorsByKind map[string]int `json:"errors_by_kind,omitempty"`
	// TransportErrors counts ErrTransport failures by class (refused,
	// reset, eof, dns, timeout, other).
	TransportErrors map[string]int `json:"transport_errors,omitempty"`

	// OfferedRate is arrivals per second; RequestRate, OutputTokenRate and
	// InputTokenRate are what was served per second (see above).
	OfferedRate     float64 `json:"offered_rate"`
	RequestRate     float64 `json:"request_rate"`
	OutputTokenRate float64 `json:"output_token_rate"`
	InputTokenRate  float64 `json:"input_token_rate"`

	// Token totals of the stage's successful requests.
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	CachedTokens int64 `json:"cached_tokens"`
	// CacheHitRatio is CachedTokens/InputTokens over requests whose usage
	// was reported: the share of prompt tokens the prefix cache served.
	CacheHitRatio float64 `json:"cache_hit_ratio"`

	// Latency distributions in seconds. ITL pools every inter-token gap of
	// every request; the others have one sample per request.
	TTFT  Dist `json:"ttft"`
	ITL   Dist `json:"itl"`
	TPOT  Dist `json:"tpot"`
	NTPOT Dist `json:"ntpot"`
	E2E   Dist `json:"e2e"`

	// Endpoints spreads the stage's answered requests (any status) over the
	// endpoints that served them.
	Endpoints map[string]EndpointShare `json:"endpoints,omitempty"`

	// SLO is how the stage's requests with a time-to-first-token objective
	// fared; nil when none had one.
	SLO *SLOAttainment `json:"slo,omitempty"`
}

// SLOAttainment counts requests with a TTFT objective: those that
// succeeded with a TTFT within it met it; failures (a 429 included) and
// late ones did not. Canceled and dropped requests are the benchmark's
// doing and left out.
type SLOAttainment struct {
	Requests int     `json:"requests"`
	Met      int     `json:"met"`
	Ratio    float64 `json:"ratio"`
}

// EndpointShare is one endpoint's part of a stage: whether a router spread
// load or concentrated it is read from these.
type EndpointShare struct {
	// Requests is how many of the stage's requests the endpoint answered.
	Requests int `json:"requests"`
	// Share is Requests over all answered requests of the stage.
	Share float64 `json:"share"`
}

// SummarizeRun summarizes every measured window of a run and their total.
// The total's window runs from the first measured window's start to the
// last one's end.
func SummarizeRun(results []RequestResult, windows []Window) (stages []Summary, total Summary) {
	var first, last *Window
	for i := range windows {
		w := &windows[i]
		if w.Warmup {
			continue
		}
		stages = append(stages, Summarize(results, *w))
		if first == nil {
			first = w
		}
		last = w
	}
	if first == nil {
		return stages, Summarize(nil, Window{Stage: -1})
	}
	return stages, Summarize(results, Window{Stage: -1, Start: first.Start, End: last.End})
}

// Summarize condenses the results that arrived in w's stage (all measured
// stages if w.Stage is -1), leaving warm-up requests out.
func Summarize(results []RequestResult, w Window) Summary {
	s := Summary{Stage: w.Stage, QPS: w.QPS, Concurrency: w.Concurrency, Seconds: w.Seconds()}
	switch {
	case w.Stage < 0:
		s.Name = "total"
	case w.Concurrency > 0:
		s.Name = Stage{Concurrency: w.Concurrency}.String()
	default:
		s.Name = Stage{QPS: w.QPS}.String()
	}
	var ttft, itl, tpot, ntpot, e2e []float64
	var usagePrompt, usageCached int64
	endpoints := map[string]int{}
	answered := 0
	for i := range results {
		r := &results[i]
		// Rates: completions inside the window, from any stage.
		if r.OK() && r.End >= w.Start && r.End < w.End {
			s.RequestRate++
			s.OutputTokenRate += float64(r.OutputTokens)
			s.InputTokenRate += float64(r.InputTokens)
		}
		if r.Warmup || (w.Stage >= 0 && r.Stage != w.Stage) {
			continue
		}
		s.Requests++
		if r.Status != 0 {
			answered++
			ep := r.Endpoint
			if ep == "" {
				ep = UnknownEndpoint
			}
			endpoints[ep]++
		}
		if r.SLOTTFTMs > 0 && r.ErrorKind != ErrCanceled && r.ErrorKind != ErrDropped {
			if s.SLO == nil {
				s.SLO = &SLOAttainment{}
			}
			s.SLO.Requests++
			if r.OK() && r.OutputTokens > 0 && r.TTFT <= time.Duration(r.SLOTTFTMs)*time.Millisecond {
				s.SLO.Met++
			}
		}
		switch r.ErrorKind {
		case ErrNone:
		case ErrCanceled:
			s.Canceled++
			continue
		case ErrDropped:
			s.Dropped++
			continue
		default:
			s.Failed++
			s.ErrorsByKind = inc(s.ErrorsByKind, string(r.ErrorKind))
			if r.ErrorKind == ErrHTTP {
				s.ErrorsByStatus = inc(s.ErrorsByStatus, strconv.Itoa(r.Status))
			}
			if r.ErrorKind == ErrTransport {
				s.TransportErrors = inc(s.TransportErrors, r.TransportError)
			}
			continue
		}
		s.Succeeded++
		s.InputTokens += int64(r.InputTokens)
		s.OutputTokens += int64(r.OutputTokens)
		s.CachedTokens += int64(r.CachedTokens)
		if r.UsageReported {
			usagePrompt += int64(r.InputTokens)
			usageCached += int64(r.CachedTokens)
		}
		if r.OutputTokens > 0 {
			ttft = append(ttft, seconds(r.TTFT))
			ntpot = append(ntpot, seconds(r.NTPOT))
		}
		if r.OutputTokens > 1 {
			tpot = append(tpot, seconds(r.TPOT))
		}
		e2e = append(e2e, seconds(r.E2E))
		for _, d := range r.ITL {
			itl = append(itl, seconds(d))
		}
	}
	if secs := w.Seconds(); secs > 0 {
		s.RequestRate /= secs
		s.OutputTokenRate /= secs
		s.InputTokenRate /= secs
		s.OfferedRate = float64(s.Requests) / secs
	} else {
		s.RequestRate, s.OutputTokenRate, s.InputTokenRate = 0, 0, 0
	}
	if usagePrompt > 0 {
		s.CacheHitRatio = float64(usageCached) / float64(usagePrompt)
	}
	if answered > 0 {
		s.Endpoints = make(map[string]EndpointShare, len(endpoints))
		for ep, n := range endpoints {
			s.Endpoints[ep] = EndpointShare{Requests: n, Share: float64(n) / float64(answered)}
		}
	}
	s.TTFT, s.ITL, s.TPOT, s.NTPOT, s.E2E = NewDist(ttft), NewDist(itl), NewDist(tpot), NewDist(ntpot), NewDist(e2e)
	if s.SLO != nil {
		s.SLO.Ratio = float64(s.SLO.Met) / float64(s.SLO.Requests)
	}
	return s
}

func inc(m map[string]int, k string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k]++
	return m
}

func sortByID(rs []RequestResult) {
	slices.SortFunc(rs, func(a, b RequestResult) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
