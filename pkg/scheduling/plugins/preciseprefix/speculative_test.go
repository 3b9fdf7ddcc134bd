package preciseprefix

import (
	"testing"
	"time"
)

func TestSpeculative_BoundedAndExpiring(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSpeculative(time.Second, 100)
	s.nowFor = func() time.Time { return now }
	for i := range 50 {
		s.record("a", []uint64{uint64(i), uint64(i + 1000), uint64(i + 2000)}, 0)
	}
	if n := s.size(); n > 100 {
		t.Errorf("%d entries held, bound 100", n)
	}
	if s.run("a", []uint64{49, 1049, 2049}, 0) != 3 {
		t.Error("newest entries dropped before older ones")
	}
	if s.run("a", []uint64{0}, 0) != 0 {
		t.Error("oldest entry kept past the bound")
	}
	if s.run("b", []uint64{49}, 0) != 0 || s.run("a", []uint64{49}, 1) != 0 {
		t.Error("entry matched another endpoint or adapter")
	}
	now = now.Add(2 * time.Second)
	if s.run("a", []uint64{49}, 0) != 0 {
		t.Error("entry alive past its TTL")
	}
	s.record("a", []uint64{7}, 0)
	if n := s.size(); n != 1 {
		t.Errorf("%d entries after expiry and one record, want 1", n)
	}
}
