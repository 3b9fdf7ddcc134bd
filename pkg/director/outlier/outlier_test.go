package outlier

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu        sync.Mutex
	ejections []string
	gauge     int
}

func (r *recorder) Ejected(_, ep string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ejections = append(r.ejections, ep)
}

func (r *recorder) EjectedEndpoints(_ string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gauge = n
}

func newDetector(t *testing.T, cfg Config, n int) (*Detector, *clock, *recorder) {
	t.Helper()
	c := &clock{t: time.Unix(1_000_000, 0)}
	rec := &recorder{}
	d, err := New(Options{Pool: "ns/pool", Config: cfg, Now: c.now, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for i := range n {
		addrs = append(addrs, addr(i))
	}
	d.SetEndpoints(addrs)
	return d, c, rec
}

func addr(i int) string { return fmt.Sprintf("10.0.0.%d:8000", i+1) }

// fail reports n failed attempts on a.
func fail(d *Detector, a string, n int) {
	for range n {
		d.Done(a, Failure, d.Start(a))
	}
}

func TestDetector_EjectsAfterConsecutiveFailures(t *testing.T) {
	d, _, rec := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures-1)
	if !d.Allowed(addr(0)) || d.Ejecting() {
		t.Fatalf("ejected after %d failures; want %d", DefaultConsecutiveFailures-1, DefaultConsecutiveFailures)
	}
	fail(d, addr(0), 1)
	if d.Allowed(addr(0)) || d.Ejected() != 1 {
		t.Fatalf("not ejected after %d failures in a row", DefaultConsecutiveFailures)
	}
	if !d.Allowed(addr(1)) {
		t.Fatal("a healthy endpoint is not allowed")
	}
	if len(rec.ejections) != 1 || rec.ejections[0] != addr(0) || rec.gauge != 1 {
		t.Fatalf("observer saw ejections %v, gauge %d; want [%s], 1", rec.ejections, rec.gauge, addr(0))
	}
}

func TestDetector_SuccessResetsTheCount(t *testing.T) {
	d, _, _ := newDetector(t, DefaultConfig(), 4)
	for range 10 {
		fail(d, addr(0), DefaultConsecutiveFailures-1)
		d.Done(addr(0), Success, d.Start(addr(0)))
	}
	if d.Ejecting() {
		t.Fatal("ejected although no run of failures reached the threshold")
	}
}

func TestDetector_AbandonedChangesNothing(t *testing.T) {
	d, _, _ := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures-1)
	d.Done(addr(0), Abandoned, false)
	fail(d, addr(0), 1)
	if !d.Ejecting() {
		t.Fatal("an abandoned attempt reset the failure count")
	}
}

func TestDetector_BackOffDoublesUpToTheMax(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEjectionTime = 60 * time.Second
	d, c, _ := newDetector(t, cfg, 4)
	fail(d, addr(0), cfg.ConsecutiveFailures)
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second, 60 * time.Second} {
		c.advance(want - time.Millisecond)
		if d.Allowed(addr(0)) {
			t.Fatalf("ejection %d: allowed before %v", i+1, want)
		}
		c.advance(time.Millisecond)
		if !d.Allowed(addr(0)) {
			t.Fatalf("ejection %d: not half-open after %v", i+1, want)
		}
		fail(d, addr(0), 1) // the probe fails: out again, twice as long
	}
}

func TestDetector_HalfOpenLetsOneProbeAtATime(t *testing.T) {
	d, c, _ := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	c.advance(DefaultBaseEjectionTime)
	if !d.Allowed(addr(0)) {
		t.Fatal("not half-open after the ejection time")
	}
	if !d.Start(addr(0)) {
		t.Fatal("the first attempt after the ejection time is not the probe")
	}
	if d.Allowed(addr(0)) || d.Start(addr(0)) {
		t.Fatal("a second request may probe while the first is in flight")
	}
	d.Done(addr(0), Abandoned, true) // the client left: the probe slot is free again
	if !d.Allowed(addr(0)) {
		t.Fatal("an abandoned probe did not free the slot")
	}
	probe := d.Start(addr(0))
	c.advance(ProbeTimeout)
	if !d.Allowed(addr(0)) {
		t.Fatal("a probe never reported keeps the endpoint out past ProbeTimeout")
	}
	d.Done(addr(0), Success, probe)
	if d.Ejecting() || !d.Allowed(addr(0)) {
		t.Fatal("a successful probe did not restore the endpoint")
	}
}

func TestDetector_FailedProbeEjectsAgain(t *testing.T) {
	d, c, rec := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	c.advance(DefaultBaseEjectionTime)
	d.Done(addr(0), Failure, d.Start(addr(0)))
	if d.Allowed(addr(0)) || d.Ejected() != 1 {
		t.Fatal("a failed probe did not eject the endpoint again")
	}
	c.advance(2*DefaultBaseEjectionTime - time.Millisecond)
	if d.Allowed(addr(0)) {
		t.Fatal("the second ejection is not twice as long")
	}
	if len(rec.ejections) != 2 || rec.gauge != 1 {
		t.Fatalf("observer: %d ejections, gauge %d; want 2, 1", len(rec.ejections), rec.gauge)
	}
}

func TestDetector_OldAttemptsDoNotEndAnEjection(t *testing.T) {
	d, c, _ := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	c.advance(time.Second)
	d.Done(addr(0), Success, false) // started before the ejection
	d.Done(addr(0), Failure, false)
	if d.Allowed(addr(0)) {
		t.Fatal("an attempt begun before the ejection ended it")
	}
	c.advance(DefaultBaseEjectionTime)
	if !d.Allowed(addr(0)) {
		t.Fatal("an attempt begun before the ejection lengthened it")
	}
}

func TestDetector_HealthyTimeForgetsPastEjections(t *testing.T) {
	d, c, _ := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	c.advance(DefaultBaseEjectionTime)
	d.Done(addr(0), Failure, d.Start(addr(0))) // second ejection: 20 s
	c.advance(2 * DefaultBaseEjectionTime)
	d.Done(addr(0), Success, d.Start(addr(0))) // restored
	c.advance(2 * DefaultBaseEjectionTime)     // healthy long enough to forget both
	fail(d, addr(0), DefaultConsecutiveFailures)
	c.advance(DefaultBaseEjectionTime)
	if !d.Allowed(addr(0)) {
		t.Fatal("the back-off did not start over after a long healthy spell")
	}
}

func TestDetector_NeverEjectsMoreThanMaxPercent(t *testing.T) {
	for _, tc := range []struct {
		size, percent, want int
	}{
		{4, 50, 2}, {5, 50, 2}, {2, 50, 1}, {1, 50, 0}, {4, 100, 4}, {10, 10, 1}, {4, 0, 0},
	} {
		t.Run(fmt.Sprintf("%d endpoints %d%%", tc.size, tc.percent), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxEjectionPercent = tc.percent
			d, _, _ := newDetector(t, cfg, tc.size)
			for i := range tc.size {
				fail(d, addr(i), 2*DefaultConsecutiveFailures)
			}
			if d.Ejected() != tc.want {
				t.Fatalf("%d ejected; want %d", d.Ejected(), tc.want)
			}
			allowed := 0
			for i := range tc.size {
				if d.Allowed(addr(i)) {
					allowed++
				}
			}
			if allowed != tc.size-tc.want {
				t.Fatalf("%d allowed; want %d", allowed, tc.size-tc.want)
			}
		})
	}
}

func TestDetector_ForgetsEndpointsThatLeave(t *testing.T) {
	d, _, rec := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	d.SetEndpoints([]string{addr(1), addr(2), addr(3)})
	if d.Ejecting() || rec.gauge != 0 {
		t.Fatalf("ejected %d, gauge %d after the ejected endpoint left; want 0", d.Ejected(), rec.gauge)
	}
	if len(d.eps) != 3 {
		t.Fatalf("the detector holds %d endpoints; want 3", len(d.eps))
	}
	fail(d, "10.9.9.9:8000", 100) // not in the pool: no state grows
	if len(d.eps) != 3 || d.Ejecting() {
		t.Fatal("outcomes of an unknown endpoint created state")
	}
	d.SetEndpoints([]string{addr(0), addr(1), addr(2), addr(3)})
	if !d.Allowed(addr(0)) {
		t.Fatal("an endpoint that came back is still ejected")
	}
}

func TestDetector_TurningOffReturnsEveryone(t *testing.T) {
	d, _, _ := newDetector(t, DefaultConfig(), 4)
	fail(d, addr(0), DefaultConsecutiveFailures)
	if err := d.SetConfig(Config{}); err != nil {
		t.Fatal(err)
	}
	if d.Ejecting() || !d.Allowed(addr(0)) {
		t.Fatal("turning detection off left an endpoint ejected")
	}
	fail(d, addr(1), 100)
	if d.Ejecting() {
		t.Fatal("detection turned off still ejects")
	}
}

func TestConfig_ValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ConsecutiveFailures: -1}, "consecutive failures"},
		{Config{ConsecutiveFailures: 5, MaxEjectionTime: time.Second}, "base ejection time"},
		{Config{ConsecutiveFailures: 5, BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}, "max ejection time"},
		{Config{MaxEjectionPercent: 101}, "max ejection percent"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error about %s", tc.cfg, err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("the default config: %v", err)
	}
}

func TestDetector_ConcurrentUse(t *testing.T) {
	d, err := New(Options{Pool: "p", Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	d.SetEndpoints([]string{addr(0), addr(1), addr(2), addr(3)})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				a := addr((w + i) % 4)
				o := Success
				if a == addr(0) {
					o = Failure
				}
				if d.Allowed(a) {
					d.Done(a, o, d.Start(a))
				}
			}
		}()
	}
	wg.Wait()
	if d.Ejected() != 1 || d.Allowed(addr(0)) {
		t.Fatalf("ejected %d; want only the failing endpoint", d.Ejected())
	}
}
