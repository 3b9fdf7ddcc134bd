package bench

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func oneTo(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(i + 1)
	}
	return s
}

func TestPercentile_NearestRankOf1To100(t *testing.T) {
	s := oneTo(100)
	for _, tc := range []struct {
		p, want float64
	}{
		{0, 1}, {1, 1}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {99.9, 100}, {100, 100}, {50.5, 51},
	} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100, %g) = %g, want %g", tc.p, got, tc.want)
		}
	}
}

func TestPercentile_RanksAreExactForManySizes(t *testing.T) {
	// p·n/100 whole: the rank must not be pushed up by floating-point error.
	for _, n := range []int{10, 20, 1000, 10000} {
		s := oneTo(n)
		for _, p := range []float64{10, 50, 90, 99, 99.9} {
			want := float64(int(p*float64(n)/100 + 0.999999))
			if got := Percentile(s, p); got != want {
				t.Errorf("n=%d p=%g: got %g, want %g", n, p, got, want)
			}
		}
	}
}

func TestPercentile_EmptyIsZero(t *testing.T) {
	if got := Percentile(nil, 50); got != 0 {
		t.Fatalf("Percentile(nil) = %g, want 0", got)
	}
}

func TestNewDist_KnownDataUnsorted(t *testing.T) {
	s := oneTo(100)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	d := NewDist(s)
	want := Dist{Count: 100, Mean: 50.5, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100}
	if d != want {
		t.Fatalf("NewDist(shuffled 1..100) = %+v, want %+v", d, want)
	}
}

func TestNewDist_EmptyIsZeroAndSerializable(t *testing.T) {
	d := NewDist(nil)
	if d != (Dist{}) {
		t.Fatalf("NewDist(nil) = %+v, want zero", d)
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatalf("marshal empty Dist: %v", err)
	}
}

func TestNewDist_OneSample(t *testing.T) {
	d := NewDist([]float64{0.25})
	want := Dist{Count: 1, Mean: 0.25, Min: 0.25, P50: 0.25, P90: 0.25, P99: 0.25, Max: 0.25}
	if d != want {
		t.Fatalf("NewDist([0.25]) = %+v, want %+v", d, want)
	}
}
