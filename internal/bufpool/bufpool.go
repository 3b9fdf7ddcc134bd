// Package bufpool recycles byte buffers by power-of-two size class. Both
// data planes read request bodies into one right-sized buffer each; with
// prompts of hundreds of kilobytes, allocating (and zeroing) those buffers
// per request was most of what the request path allocated, and the garbage
// collection it caused showed in tail latency. One pool per class keeps a
// 4 KB request from holding a 1 MiB buffer.
package bufpool

import (
	"math/bits"
	"sync"
)

// The pooled size classes: 4 KiB to 16 MiB. Larger buffers are allocated
// and dropped as usual.
const (
	minClass = 12
	maxClass = 24
)

// Pool is a set of size-class pools. The zero value is ready to use.
type Pool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

// class is the index of the smallest class holding n bytes, or -1 when n
// is above the largest.
func class(n int) int {
	if n <= 1<<minClass {
		return 0
	}
	c := bits.Len(uint(n-1)) - minClass
	if c > maxClass-minClass {
		return -1
	}
	return c
}

// Get is a buffer of length 0 and capacity at least n.
func (p *Pool) Get(n int) []byte { return *p.get(n) }

// Put returns a buffer got from Get; the caller must not use it after.
// Buffers of other capacities (grown by append, or not from Get) are
// dropped.
func (p *Pool) Put(b []byte) { p.put(&b) }

func (p *Pool) get(n int) *[]byte {
	c := class(n)
	if c < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<(c+minClass))
	return &b
}

func (p *Pool) put(b *[]byte) {
	c := class(cap(*b))
	if c < 0 || cap(*b) != 1<<(c+minClass) {
		return
	}
	*b = (*b)[:0]
	p.classes[c].Put(b)
}

// GRPC lends a Pool's buffers to gRPC (as a mem.BufferPool, set with
// grpc's experimental.BufferPool option). gRPC's default pool zeroes every
// buffer it hands out; gRPC reads frames into these buffers and overwrites
// every byte it then exposes, so the zeroing was pure cost — at 220 KB
// request bodies about 6% of the picker's CPU (docs/performance.md).
type GRPC struct{ pool Pool }

// Get is a buffer of length n (its bytes are not zeroed).
func (g *GRPC) Get(n int) *[]byte {
	b := g.pool.get(n)
	*b = (*b)[:n]
	return b
}

// Put returns a buffer got from Get.
func (g *GRPC) Put(b *[]byte) { g.pool.put(b) }
