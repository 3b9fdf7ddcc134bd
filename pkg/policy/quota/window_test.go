package quota

import (
	"testing"
	"time"
)

// At 1-second sub-buckets of a 60-second window, usage admitted at t
// counts until the sub-bucket of t is more than 60 sub-buckets old: at
// t=10.5s it still counts at 70.999s and is gone at 71.000s (60.5 s later,
// within one width of the window).
func TestCounter_ForgetsUsageBetweenOneWindowAndOneWidthLater(t *testing.T) {
	w := Minute
	wms := w.Width().Milliseconds()
	c := newCounter(w)
	at := int64(1_700_000_010_500)
	c.charge(bucketOf(at, wms), 7)
	for _, tc := range []struct {
		after time.Duration
		want  int64
	}{
		{0, 7}, {59 * time.Second, 7}, {60 * time.Second, 7}, {60*time.Second + 499*time.Millisecond, 7},
		{60*time.Second + 500*time.Millisecond, 0}, {2 * time.Hour, 0},
	} {
		c.advance(bucketOf(at+tc.after.Milliseconds(), wms))
		if c.total != tc.want {
			t.Errorf("%v after admission: counted %d, want %d", tc.after, c.total, tc.want)
		}
	}
}

// Whatever the arrival times, the counter never holds less than the true
// sliding sum of the last Length (no early forgetting) and never more than
// the sum of the last Length+Width.
func TestCounter_ErrorBoundAgainstExactSlidingSum(t *testing.T) {
	w := Window{Length: 10 * time.Second, Buckets: 10}
	wms := w.Width().Milliseconds()
	c := newCounter(w)
	type ev struct{ at, n int64 }
	var evs []ev
	now := int64(1_000_000)
	seed := uint64(42)
	for i := 0; i < 5000; i++ {
		seed = seed*6364136223846793005 + 1442695040888963407
		now += int64(seed>>33) % 700 // 0..0.7s apart
		n := int64(seed>>50)%9 + 1
		c.charge(bucketOf(now, wms), n)
		evs = append(evs, ev{now, n})
		var exact, loose int64
		for _, e := range evs {
			if e.at > now-w.Length.Milliseconds() {
				exact += e.n
			}
			if e.at > now-w.Length.Milliseconds()-wms {
				loose += e.n
			}
		}
		if c.total < exact || c.total > loose {
			t.Fatalf("at %d: counted %d, exact sliding sum %d, with one width more %d", now, c.total, exact, loose)
		}
		if len(evs) > 200 {
			evs = evs[1:]
		}
	}
}

func TestCounter_SettleClampsAtZeroAndIgnoresForgottenBuckets(t *testing.T) {
	w := Minute
	wms := w.Width().Milliseconds()
	c := newCounter(w)
	at := int64(5_000_000)
	c.charge(bucketOf(at, wms), 10)
	c.add(bucketOf(at, wms), -25)
	if c.total != 0 {
		t.Fatalf("total after over-correction = %d, want 0", c.total)
	}
	c.charge(bucketOf(at, wms), 10)
	later := at + 61_000
	c.advance(bucketOf(later, wms))
	c.add(bucketOf(at, wms), 100) // that sub-bucket is gone
	if c.total != 0 {
		t.Fatalf("a correction to a forgotten sub-bucket counted: total %d", c.total)
	}
}

func TestCounter_RetryAndResetTimes(t *testing.T) {
	w := Minute
	wms := w.Width().Milliseconds()
	c := newCounter(w)
	t0 := int64(1_000_000_000) // on a second boundary
	c.charge(bucketOf(t0, wms), 40)
	c.charge(bucketOf(t0+20_000, wms), 50)
	now := t0 + 30_000
	c.advance(bucketOf(now, wms))
	// 40 leave at t0+61s, 50 at t0+81s.
	if got := c.retryIn(now, wms, 30); got != 31*time.Second {
		t.Errorf("retryIn(30) = %v, want 31s", got)
	}
	if got := c.retryIn(now, wms, 41); got != 51*time.Second {
		t.Errorf("retryIn(41) = %v, want 51s", got)
	}
	if got := c.retryIn(now, wms, 91); got != 0 {
		t.Errorf("retryIn(more than counted) = %v, want 0 (never)", got)
	}
	if got := c.resetIn(now, wms); got != 51*time.Second {
		t.Errorf("resetIn = %v, want 51s", got)
	}
}

func TestWindowOf_SubBucketsAndNames(t *testing.T) {
	for _, tc := range []struct {
		d     time.Duration
		width time.Duration
		name  string
	}{
		{time.Minute, time.Second, "1m"},
		{time.Hour, time.Minute, "1h"},
		{24 * time.Hour, 15 * time.Minute, "24h"},
		{time.Second, 17 * time.Millisecond, "1s"},
		{90 * time.Second, 1500 * time.Millisecond, "90s"},
	} {
		w := WindowOf(tc.d)
		if w.Width() != tc.width || w.String() != tc.name {
			t.Errorf("WindowOf(%v): width %v name %q, want %v %q", tc.d, w.Width(), w.String(), tc.width, tc.name)
		}
		if time.Duration(w.Buckets)*w.Width() < tc.d {
			t.Errorf("WindowOf(%v) covers only %v", tc.d, time.Duration(w.Buckets)*w.Width())
		}
	}
}
