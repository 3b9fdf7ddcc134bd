package gateway

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/igw-dev/igw/internal/bufpool"
)

// Request bodies are read once into one pooled buffer, sized from the
// declared Content-Length (up to initialBodyBytes before any byte arrived)
// and grown by doubling with the bytes actually received, up to the
// limit. The buffer is parsed in place and forwarded as it is, never
// copied again; it goes back to its pool when the handler and every
// outgoing request that sent it are done with it. At 1,000 concurrent
// 220 KB prompts the gateway so holds about the bodies' bytes, and
// allocates almost nothing per request once the pools are warm.

// initialBodyBytes bounds what is allocated on a Content-Length alone,
// before the bytes arrive: a client declaring 10 MiB and sending one byte
// pins 256 KiB, not 10 MiB.
const initialBodyBytes = 256 << 10

// bodyPools recycles request-body buffers by size class.
type bodyPools struct{ bufpool.Pool }

func (p *bodyPools) get(n int) []byte { return p.Get(n) }
func (p *bodyPools) put(b []byte)     { p.Put(b) }

// errBodyTooLarge is returned when a body exceeds the limit.
type errBodyTooLarge struct{ limit int64 }

func (e *errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body is over the limit of %d bytes", e.limit)
}

// errBodyCapacity is returned when a body's buffer would take the bytes
// held by all bodies in flight over the budget.
var errBodyCapacity = errors.New("the request bodies in flight hold all the bytes the gateway allows them")

// bodyBudget bounds the buffer bytes held by all request bodies in flight,
// however many connections clients open: each body reserves its buffer's
// capacity as the buffer grows, and gives it back when the body is
// released. A nil budget bounds nothing.
type bodyBudget struct {
	held  atomic.Int64
	limit atomic.Int64
	// observe reports every change of held (the gauge); may be nil.
	observe func(delta int64)
}

// reserve takes n bytes from the budget, or reports that they would take
// it over its limit (taking nothing).
func (g *bodyBudget) reserve(n int64) bool {
	if g == nil {
		return true
	}
	if g.held.Add(n) > g.limit.Load() {
		g.held.Add(-n)
		return false
	}
	if g.observe != nil {
		g.observe(n)
	}
	return true
}

// adjust changes the bytes held without a check (a pooled buffer rounded
// up to its size class, an old buffer given back after a grow).
func (g *bodyBudget) adjust(n int64) {
	if g == nil || n == 0 {
		return
	}
	g.held.Add(n)
	if g.observe != nil {
		g.observe(n)
	}
}

// readBody reads r whole into a pooled buffer, at most limit bytes, with
// the buffer's capacity reserved from budget as it grows (nil: no
// budget). declared is the Content-Length (-1 when unknown). The caller
// owns the returned buffer and hands it back with body.release, which
// also returns the reservation.
func (p *bodyPools) readBody(r io.Reader, declared, limit int64, budget *bodyBudget) (*body, error) {
	if declared > limit {
		return nil, &errBodyTooLarge{limit}
	}
	size := int64(initialBodyBytes)
	if declared >= 0 {
		// One byte more than declared, so the read that finds the end
		// does not grow a full buffer.
		size = min(declared+1, initialBodyBytes)
	}
	size = max(size, 512)
	if !budget.reserve(size) {
		return nil, errBodyCapacity
	}
	buf := p.get(int(size))
	reserved := int64(cap(buf))
	budget.adjust(reserved - size)
	fail := func(err error) (*body, error) {
		p.put(buf)
		budget.adjust(-reserved)
		return nil, err
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return fail(&errBodyTooLarge{limit})
			}
			want := min(int64(cap(buf))*2, limit+1)
			if !budget.reserve(want) {
				return fail(errBodyCapacity)
			}
			next := p.get(int(want))
			budget.adjust(int64(cap(next)) - want)
			next = append(next, buf...)
			p.put(buf)
			budget.adjust(-reserved)
			buf, reserved = next, int64(cap(next))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return fail(&errBodyTooLarge{limit})
		}
		if errors.Is(err, io.EOF) {
			b := &body{pools: p, buf: buf, budget: budget, reserved: reserved}
			b.refs.Store(1)
			return b, nil
		}
		if err != nil {
			return fail(err)
		}
	}
}

// body is a request body in a pooled buffer, shared by the handler and the
// outgoing requests that send it; the last to let go returns it.
type body struct {
	pools    *bodyPools
	buf      []byte
	budget   *bodyBudget
	reserved int64 // the buffer's capacity, reserved from budget
	refs     atomic.Int32
}

// hold adds a user (an outgoing request whose transport may still read
// the bytes after the response came back).
func (b *body) hold() { b.refs.Add(1) }

// release drops a user; the last returns the buffer.
func (b *body) release() {
	if b.refs.Add(-1) == 0 {
		b.pools.put(b.buf)
		b.buf = nil
		b.budget.adjust(-b.reserved)
	}
}

// bodyReader sends a slice of a pooled body and releases its hold when the
// transport closes it (exactly once).
type bodyReader struct {
	b      *body
	data   []byte
	off    int
	closed atomic.Bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

// WriteTo lets the transport write the body in one call.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	if r.off >= len(r.data) {
		return 0, nil
	}
	n, err := w.Write(r.data[r.off:])
	r.off += n
	return int64(n), err
}

func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) && r.b != nil {
		r.b.release()
	}
	return nil
}
