package bench

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// fixedSource sends the same small chat request, counting completions.
type fixedSource struct {
	next, completed atomic.Int64
}

func (s *fixedSource) Next() *Request {
	n := s.next.Add(1)
	return &Request{Model: "m", Messages: []openai.ChatMessage{message("user", "hi")}, MaxTokens: 3, Group: int(n)}
}

func (s *fixedSource) Complete(*Request, *RequestResult, string) { s.completed.Add(1) }

func TestRun_MaxRequestsAndWarmup(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tokens: 3})
	defer srv.Close()
	src := &fixedSource{}
	var seen atomic.Int64
	res, err := Run(context.Background(), newTestClient(t, srv.URL), src, Options{
		Stages:      []Stage{stage(200, 0, 10*time.Second)},
		Warmup:      100 * time.Millisecond,
		MaxRequests: 60,
		Seed:        1,
		OnResult:    func(RequestResult) { seen.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Requests) != 60 || src.completed.Load() != 60 || seen.Load() != 60 {
		t.Fatalf("%d results, %d completed, %d seen; want 60 each", len(res.Requests), src.completed.Load(), seen.Load())
	}
	if res.Elapsed.Duration > 5*time.Second {
		t.Fatalf("run took %v: MaxRequests did not end it", res.Elapsed)
	}
	warm := 0
	for i, r := range res.Requests {
		if r.ID != int64(i) {
			t.Fatalf("results not in ID order at %d", i)
		}
		if !r.OK() || r.OutputTokens != 3 {
			t.Fatalf("request %d: %+v", i, r)
		}
		if r.Warmup {
			warm++
			if r.Scheduled >= 100*time.Millisecond {
				t.Fatalf("warm-up request scheduled at %v", r.Scheduled)
			}
		}
	}
	if warm == 0 || warm == 60 {
		t.Fatalf("%d warm-up requests, want some but not all", warm)
	}
	if res.Total.Requests != 60-warm || res.Stages[0].Succeeded != 60-warm {
		t.Fatalf("summaries count %d/%d, want %d (warm-up excluded)", res.Total.Requests, res.Stages[0].Succeeded, 60-warm)
	}
}

func TestRun_ClosedLoopKeepsConcurrency(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tokens: 2, gap: 10 * time.Millisecond})
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	res, err := Run(context.Background(), c, &fixedSource{}, Options{Stages: []Stage{stage(0, 3, 400*time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	// The client's own concurrency: the most requests open at one instant.
	type edge struct {
		at    time.Duration
		delta int
	}
	var edges []edge
	for _, r := range res.Requests {
		edges = append(edges, edge{r.Start, 1}, edge{r.End, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	open, peak := 0, 0
	for _, e := range edges {
		open += e.delta
		peak = max(peak, open)
	}
	if peak > 3 || peak < 2 {
		t.Fatalf("peak concurrency %d, want 3 (≥2 on a busy machine)", peak)
	}

	// A ladder: requests belong to the stage in which they were sent (the
	// last ones of a stage may still finish during the next).
	res, err = Run(context.Background(), c, &fixedSource{}, Options{
		Stages: []Stage{stage(0, 3, 300*time.Millisecond), stage(100, 0, 300*time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stages) != 2 || res.Stages[0].Succeeded < 10 || res.Stages[1].Succeeded < 10 {
		t.Fatalf("stage successes %d, %d", res.Stages[0].Succeeded, res.Stages[1].Succeeded)
	}
	for _, r := range res.Requests {
		w := res.Windows[r.Stage]
		if r.Scheduled < w.Start || r.Scheduled >= w.End {
			t.Fatalf("request %d of stage %d scheduled at %v outside [%v, %v)", r.ID, r.Stage, r.Scheduled, w.Start, w.End)
		}
	}
}

func TestRun_CancelStopsCleanly(t *testing.T) {
	// A server that never answers: every request is in flight when the
	// context is cancelled.
	release := make(chan struct{})
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer func() { close(release); srv.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, newTestClient(t, srv.URL), &fixedSource{}, Options{Stages: []Stage{stage(50, 0, time.Minute)}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Run took %v after cancel", time.Since(start))
	}
	if !res.Interrupted || len(res.Requests) == 0 {
		t.Fatalf("interrupted %v with %d requests", res.Interrupted, len(res.Requests))
	}
	for _, r := range res.Requests {
		if r.ErrorKind != ErrCanceled {
			t.Fatalf("request %d: kind %q, want canceled", r.ID, r.ErrorKind)
		}
	}
	if res.Total.Canceled != len(res.Requests) || res.Total.Failed != 0 {
		t.Fatalf("total canceled %d failed %d", res.Total.Canceled, res.Total.Failed)
	}
}

func TestRun_DrainTimeoutCancelsStragglers(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tokens: 1000, gap: 10 * time.Millisecond})
	defer srv.Close()
	res, err := Run(context.Background(), newTestClient(t, srv.URL), &fixedSource{}, Options{
		Stages: []Stage{stage(0, 2, 100*time.Millisecond)}, DrainTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed.Duration > 3*time.Second || res.Total.Canceled != 2 {
		t.Fatalf("elapsed %v canceled %d, want ~0.3s and 2", res.Elapsed, res.Total.Canceled)
	}
}

func TestRun_RequestTimeout(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tokens: 1000, gap: 10 * time.Millisecond})
	defer srv.Close()
	res, err := Run(context.Background(), newTestClient(t, srv.URL), &fixedSource{}, Options{
		Stages: []Stage{stage(0, 1, 50*time.Millisecond)}, RequestTimeout: 100 * time.Millisecond, MaxRequests: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.ErrorsByKind["timeout"] != 1 {
		t.Fatalf("errors %v, want one timeout", res.Total.ErrorsByKind)
	}
}

func TestRun_RejectsBadOptions(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1")
	if _, err := Run(context.Background(), c, &fixedSource{}, Options{}); err == nil || !containsLine(err.Error(), "bench: stages") {
		t.Fatalf("err = %v", err)
	}
}
