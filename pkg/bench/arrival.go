package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// Duration is a time.Duration that YAML and JSON write as "30s", so
// workload files read like the rest of igw's configuration.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string ("1m30s") or a number of
// seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("invalid duration %s: %w", b, err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: %w", s, err)
		}
		d.Duration = v
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("invalid duration %s: want a string like \"30s\" or seconds", b)
	}
	d.Duration = time.Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Stage is one step of a load ladder: either an open-loop Poisson arrival
// process at QPS requests per second (arrivals do not wait for answers, as
// real users do not), or a closed loop of Concurrency workers that each
// send their next request when the previous one ends (a saturation test
// that cannot overload the target). Exactly one of QPS and Concurrency is
// set.
type Stage struct {
	// QPS is the mean arrival rate of an open-loop stage.
	QPS float64 `json:"qps,omitempty"`
	// Concurrency is the number of closed-loop workers.
	Concurrency int `json:"concurrency,omitempty"`
	// Duration is how long the stage sends requests.
	Duration Duration `json:"duration"`
}

// String names the stage the way reports label it: "qps=10" or "c=8".
func (s Stage) String() string {
	if s.Concurrency > 0 {
		return fmt.Sprintf("c=%d", s.Concurrency)
	}
	return fmt.Sprintf("qps=%g", s.QPS)
}

// validate names the offending field with prefix (e.g. "stages[2]").
func (s Stage) validate(prefix string) []error {
	var errs []error
	switch {
	case s.QPS < 0:
		errs = append(errs, fmt.Errorf("%s.qps: must not be negative, got %g", prefix, s.QPS))
	case s.Concurrency < 0:
		errs = append(errs, fmt.Errorf("%s.concurrency: must not be negative, got %d", prefix, s.Concurrency))
	case s.QPS > 0 && s.Concurrency > 0:
		errs = append(errs, fmt.Errorf("%s: set qps or concurrency, not both", prefix))
	case s.QPS == 0 && s.Concurrency == 0:
		errs = append(errs, fmt.Errorf("%s: set qps or concurrency", prefix))
	}
	if s.Duration.Duration <= 0 {
		errs = append(errs, fmt.Errorf("%s.duration: must be > 0, got %s", prefix, s.Duration))
	}
	return errs
}

// Window is the stretch of a run during which one stage (or the warm-up)
// sends requests, as offsets from the start of the run. Summaries are
// computed per window.
type Window struct {
	// Stage is the index into Options.Stages; -1 stands for the whole run
	// in a total summary.
	Stage int `json:"stage"`
	// Warmup marks the warm-up window, which runs the first stage's load
	// before the measured stages.
	Warmup bool `json:"warmup,omitempty"`
	// Start and End bound the window: requests sent in [Start, End)
	// belong to it, and its rates count completions in that span.
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
	// QPS or Concurrency is the stage's load, for labels and charts.
	QPS         float64 `json:"qps,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
}

// Seconds is the window's length in seconds.
func (w Window) Seconds() float64 { return (w.End - w.Start).Seconds() }

// Plan lays the run's windows end to end: the warm-up (if any, at the first
// stage's load), then every stage for its duration, all cut off at
// MaxDuration. Windows that would start after the cut are left out. The
// runner follows this plan, and tests can check it without running.
func Plan(o Options) []Window {
	var ws []Window
	at := time.Duration(0)
	add := func(w Window, d time.Duration) {
		if o.MaxDuration > 0 {
			if at >= o.MaxDuration {
				return
			}
			d = min(d, o.MaxDuration-at)
		}
		w.Start, w.End = at, at+d
		ws = append(ws, w)
		at += d
	}
	if o.Warmup > 0 && len(o.Stages) > 0 {
		s := o.Stages[0]
		add(Window{Stage: 0, Warmup: true, QPS: s.QPS, Concurrency: s.Concurrency}, o.Warmup)
	}
	for i, s := range o.Stages {
		add(Window{Stage: i, QPS: s.QPS, Concurrency: s.Concurrency}, s.Duration.Duration)
	}
	return ws
}

// PoissonArrivals returns the arrival times of a Poisson process of rate
// qps over [start, end): exponential gaps drawn from a generator seeded by
// seed and stream, so the same seed gives the same arrivals to every
// contender of a comparison.
func PoissonArrivals(seed int64, stream uint64, qps float64, start, end time.Duration) []time.Duration {
	if qps <= 0 || end <= start {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15^stream))
	out := make([]time.Duration, 0, int(qps*(end-start).Seconds()*1.1)+8)
	t := float64(start)
	for {
		t += rng.ExpFloat64() / qps * float64(time.Second)
		if t >= float64(end) {
			return out
		}
		out = append(out, time.Duration(t))
	}
}
