package bufpool

import "testing"

func TestPool_GetFitsAndReuses(t *testing.T) {
	var p Pool
	for _, n := range []int{0, 1, 4096, 4097, 220 << 10, 10 << 20, 16 << 20} {
		b := p.Get(n)
		if len(b) != 0 || cap(b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(b), cap(b))
		}
		if n > 4096 && cap(b) >= 2*n {
			t.Errorf("Get(%d): cap %d is more than one class up", n, cap(b))
		}
		p.Put(b)
	}
	if b := p.Get(32 << 20); cap(b) != 32<<20 {
		t.Errorf("an unpooled size is allocated exactly: cap %d", cap(b))
	}
	p.Put(make([]byte, 5000)) // not a class size: dropped, no panic
}

func BenchmarkPool_220KB(b *testing.B) {
	var p Pool
	b.ReportAllocs()
	for b.Loop() {
		buf := p.Get(220 << 10)
		p.Put(buf)
	}
}

func TestGRPC_GetHasLengthAndReuses(t *testing.T) {
	var g GRPC
	for _, n := range []int{5, 4096, 16 << 10, 220 << 10, 32 << 20} {
		b := g.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): len %d", n, len(*b))
		}
		(*b)[n-1] = 1
		g.Put(b)
	}
	b := g.Get(16 << 10)
	c := g.Get(16 << 10)
	if &(*b)[0] == &(*c)[0] {
		t.Fatal("two live buffers share memory")
	}
}
