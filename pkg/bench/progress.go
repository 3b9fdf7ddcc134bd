package bench

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// IsTerminal reports whether f is a terminal (a character device), so a
// live progress line is only drawn for a person watching, never into a CI
// log. A stat check is enough for that and needs no extra dependency.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Progress draws one status line of a running benchmark — the stage, the
// rate served over the last few seconds, the p90 TTFT of the stage so far
// and its errors — and rewrites it in place (carriage return) every
// interval. Feed it results with Observe (as Options.OnResult).
type Progress struct {
	w       io.Writer
	label   string
	windows []Window
	every   time.Duration

	mu      sync.Mutex
	start   time.Time
	stages  map[int]*stageProgress // by window index
	recent  []time.Time            // completion times of recent successes
	lastLen int

	stop chan struct{}
	done chan struct{}
}

type stageProgress struct {
	ttft   []float64
	errors int
	ok     int
}

// progressRateWindow is the span over which the live req/s is measured: long
// enough to smooth Poisson arrivals, short enough to follow a new stage.
const progressRateWindow = 5 * time.Second

// NewProgress returns a progress line for a run of o labelled label,
// written to w.
func NewProgress(w io.Writer, label string, o Options) *Progress {
	return &Progress{w: w, label: label, windows: Plan(o), every: 500 * time.Millisecond, stages: map[int]*stageProgress{}}
}

// Start begins drawing; call it right before Run so that the line's clock
// matches the run's.
func (p *Progress) Start() {
	p.mu.Lock()
	p.start = time.Now()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	p.mu.Unlock()
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(false)
			case <-p.stop:
				return
			}
		}
	}()
}

// Stop draws the final line and ends it with a newline.
func (p *Progress) Stop() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.draw(true)
}

// Observe accounts one finished request.
func (p *Progress) Observe(r RequestResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	idx := p.windowIndex(r)
	sp := p.stages[idx]
	if sp == nil {
		sp = &stageProgress{}
		p.stages[idx] = sp
	}
	switch {
	case r.OK():
		sp.ok++
		if r.OutputTokens > 0 {
			sp.ttft = append(sp.ttft, r.TTFT.Seconds())
		}
		p.recent = append(p.recent, time.Now())
	case r.ErrorKind != ErrCanceled:
		sp.errors++
	}
}

// windowIndex maps a result to its window in the plan.
func (p *Progress) windowIndex(r RequestResult) int {
	for i, w := range p.windows {
		if w.Warmup == r.Warmup && w.Stage == r.Stage {
			return i
		}
	}
	return -1
}

// line renders the status at now; callers hold mu.
func (p *Progress) line(now time.Time) string {
	elapsed := now.Sub(p.start)
	cur := len(p.windows) - 1
	for i, w := range p.windows {
		if elapsed < w.End {
			cur = i
			break
		}
	}
	cut := now.Add(-progressRateWindow)
	drop := 0
	for drop < len(p.recent) && p.recent[drop].Before(cut) {
		drop++
	}
	p.recent = p.recent[drop:]
	rate := float64(len(p.recent)) / min(progressRateWindow.Seconds(), max(elapsed.Seconds(), 0.001))

	var b strings.Builder
	b.WriteString(p.label)
	if cur >= 0 {
		w := p.windows[cur]
		measured := 0
		for _, x := range p.windows {
			if !x.Warmup {
				measured++
			}
		}
		name := Stage{QPS: w.QPS, Concurrency: w.Concurrency}.String()
		if w.Warmup {
			fmt.Fprintf(&b, "  warm-up %s", name)
		} else {
			fmt.Fprintf(&b, "  stage %d/%d %s", w.Stage+1, measured, name)
		}
		in := min(max(elapsed-w.Start, 0), w.End-w.Start)
		fmt.Fprintf(&b, " %3.0fs/%.0fs", in.Seconds(), (w.End - w.Start).Seconds())
		if elapsed > w.End {
			b.WriteString(" draining")
		}
	}
	fmt.Fprintf(&b, "  %6.1f req/s", rate)
	if sp := p.stages[cur]; sp != nil {
		if len(sp.ttft) > 0 {
			s := slices.Clone(sp.ttft)
			slices.Sort(s)
			fmt.Fprintf(&b, "  p90 TTFT %s", formatSeconds(Percentile(s, 90)))
		}
		fmt.Fprintf(&b, "  ok %d  errors %d", sp.ok, sp.errors)
	}
	return b.String()
}

// draw rewrites the line in place, padding over a longer previous one.
func (p *Progress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.line(time.Now())
	pad := max(p.lastLen-len(l), 0)
	p.lastLen = len(l)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s%s", l, strings.Repeat(" ", pad), end)
}

// formatSeconds prints a latency with a unit a reader takes in at a glance.
func formatSeconds(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2fs", s)
	default:
		return fmt.Sprintf("%.1fs", s)
	}
}
