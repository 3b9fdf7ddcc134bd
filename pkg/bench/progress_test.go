package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgress_LineShowsStageRateP90AndErrors(t *testing.T) {
	o := Options{Warmup: time.Second, Stages: []Stage{
		{QPS: 8, Duration: Duration{2 * time.Second}}, {QPS: 16, Duration: Duration{2 * time.Second}},
	}}
	p := NewProgress(&bytes.Buffer{}, "igw-default", o)
	p.start = time.Now().Add(-3500 * time.Millisecond) // 1.5 s into stage 2
	for i := range 10 {
		p.Observe(RequestResult{Stage: 1, TTFT: time.Duration(i+1) * 100 * time.Millisecond, OutputTokens: 4})
	}
	p.Observe(RequestResult{Stage: 1, ErrorKind: ErrHTTP, Status: 503})
	p.Observe(RequestResult{Stage: 1, ErrorKind: ErrCanceled})              // not the target's fault
	p.Observe(RequestResult{Stage: 0, Warmup: true, ErrorKind: ErrTimeout}) // another window
	line := p.line(time.Now())
	for _, want := range []string{"igw-default", "stage 2/2 qps=16", "p90 TTFT 900ms", "ok 10", "errors 1", "req/s"} {
		if !strings.Contains(line, want) {
			t.Fatalf("line %q lacks %q", line, want)
		}
	}
	p.start = time.Now().Add(-500 * time.Millisecond)
	if line := p.line(time.Now()); !strings.Contains(line, "warm-up qps=8") || !strings.Contains(line, "errors 1") {
		t.Fatalf("warm-up line %q", line)
	}
}

func TestProgress_RewritesInPlaceAndEndsWithNewline(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, "x", Options{Stages: []Stage{{QPS: 1, Duration: Duration{time.Second}}}})
	p.every = 10 * time.Millisecond
	p.Start()
	time.Sleep(50 * time.Millisecond)
	p.Stop()
	s := out.String()
	if strings.Count(s, "\r") < 2 || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("output %q", s)
	}
}

func TestIsTerminal_FileIsNot(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
}
