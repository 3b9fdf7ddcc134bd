package bench

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"
)

func TestPoissonArrivals_RateWithinTolerance(t *testing.T) {
	// 50 req/s over 200 s: 10,000 expected arrivals, standard deviation
	// 100; 3% is three of them. The times are computed, never slept.
	const qps, secs = 50.0, 200
	for seed := range int64(5) {
		at := PoissonArrivals(seed, 0, qps, 0, secs*time.Second)
		rate := float64(len(at)) / secs
		if math.Abs(rate-qps)/qps > 0.03 {
			t.Errorf("seed %d: rate %.2f/s, want %g ± 3%%", seed, rate, qps)
		}
		// Exponential gaps: mean 1/qps and coefficient of variation 1.
		var sum, sumSq float64
		prev := time.Duration(0)
		for _, a := range at {
			g := (a - prev).Seconds()
			sum += g
			sumSq += g * g
			prev = a
		}
		n := float64(len(at))
		mean := sum / n
		cv := math.Sqrt(sumSq/n-mean*mean) / mean
		if math.Abs(cv-1) > 0.05 {
			t.Errorf("seed %d: gap coefficient of variation %.3f, want 1 ± 0.05 (exponential)", seed, cv)
		}
		if !slices.IsSorted(at) {
			t.Errorf("seed %d: arrivals not increasing", seed)
		}
	}
}

func TestPoissonArrivals_SeededAndWithinWindow(t *testing.T) {
	a := PoissonArrivals(7, 3, 20, 5*time.Second, 15*time.Second)
	b := PoissonArrivals(7, 3, 20, 5*time.Second, 15*time.Second)
	if !slices.Equal(a, b) {
		t.Fatal("same seed and stream gave different arrivals")
	}
	if c := PoissonArrivals(7, 4, 20, 5*time.Second, 15*time.Second); slices.Equal(a, c) {
		t.Fatal("different streams gave the same arrivals")
	}
	for _, x := range a {
		if x < 5*time.Second || x >= 15*time.Second {
			t.Fatalf("arrival %v outside [5s, 15s)", x)
		}
	}
	if PoissonArrivals(1, 0, 0, 0, time.Second) != nil {
		t.Fatal("qps 0 must give no arrivals")
	}
}

func stage(qps float64, conc int, d time.Duration) Stage {
	return Stage{QPS: qps, Concurrency: conc, Duration: Duration{d}}
}

func TestPlan_LadderStageBoundaries(t *testing.T) {
	o := Options{
		Warmup: 5 * time.Second,
		Stages: []Stage{stage(10, 0, 10*time.Second), stage(0, 4, 20*time.Second), stage(30, 0, 10*time.Second)},
	}
	s := time.Second
	want := []Window{
		{Stage: 0, Warmup: true, Start: 0, End: 5 * s, QPS: 10},
		{Stage: 0, Start: 5 * s, End: 15 * s, QPS: 10},
		{Stage: 1, Start: 15 * s, End: 35 * s, Concurrency: 4},
		{Stage: 2, Start: 35 * s, End: 45 * s, QPS: 30},
	}
	if got := Plan(o); !slices.Equal(got, want) {
		t.Fatalf("Plan =\n%+v\nwant\n%+v", got, want)
	}

	// MaxDuration cuts the ladder: stage 1 ends early, stage 2 never runs.
	o.MaxDuration = 30 * s
	want = want[:3]
	want[2].End = 30 * s
	if got := Plan(o); !slices.Equal(got, want) {
		t.Fatalf("Plan with max 30s =\n%+v\nwant\n%+v", got, want)
	}

	// Each open-loop window's arrivals fall inside it.
	for i, w := range Plan(o) {
		for _, a := range PoissonArrivals(1, uint64(i), w.QPS, w.Start, w.End) {
			if a < w.Start || a >= w.End {
				t.Fatalf("window %d: arrival %v outside [%v, %v)", i, a, w.Start, w.End)
			}
		}
	}
}

func TestStage_ValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		s    Stage
		want string
	}{
		{stage(0, 0, time.Second), "stages[0]: set qps or concurrency"},
		{stage(1, 2, time.Second), "stages[0]: set qps or concurrency, not both"},
		{stage(-1, 0, time.Second), "stages[0].qps: must not be negative"},
		{stage(1, 0, 0), "stages[0].duration: must be > 0"},
	} {
		o := Options{Stages: []Stage{tc.s}}
		err := o.validate()
		if err == nil || !containsLine(err.Error(), tc.want) {
			t.Errorf("validate(%+v) = %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestDuration_JSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"1m30s"`), &d); err != nil || d.Duration != 90*time.Second {
		t.Fatalf(`"1m30s" -> %v, %v`, d, err)
	}
	if err := json.Unmarshal([]byte(`2.5`), &d); err != nil || d.Duration != 2500*time.Millisecond {
		t.Fatalf(`2.5 -> %v, %v`, d, err)
	}
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Fatal(`"soon" accepted`)
	}
	b, _ := json.Marshal(Duration{3 * time.Second})
	if string(b) != `"3s"` {
		t.Fatalf("marshal = %s", b)
	}
}
