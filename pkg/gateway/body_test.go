package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadBody_SizesAndLimits(t *testing.T) {
	var p bodyPools
	data := bytes.Repeat([]byte("x"), 300<<10) // beyond initialBodyBytes: grows
	tests := []struct {
		name     string
		r        io.Reader
		declared int64
		limit    int64
		want     []byte
		tooLarge bool
	}{
		{"declared, fits", bytes.NewReader(data[:4096]), 4096, 1 << 20, data[:4096], false},
		{"unknown length, grows past the first buffer", iotest.OneByteReader(bytes.NewReader(data[:5000])), -1, 1 << 20, data[:5000], false},
		{"declared 300 KiB, grows from 256 KiB", bytes.NewReader(data), int64(len(data)), 1 << 20, data, false},
		{"empty", strings.NewReader(""), 0, 1 << 20, []byte{}, false},
		{"declared over the limit", bytes.NewReader(data), int64(len(data)), 1000, nil, true},
		{"sent over the limit, declared less", bytes.NewReader(data), 10, 1000, nil, true},
		{"unknown length over the limit", bytes.NewReader(data), -1, 100 << 10, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := p.readBody(tc.r, tc.declared, tc.limit, nil)
			var tl *errBodyTooLarge
			if tc.tooLarge {
				if !errors.As(err, &tl) {
					t.Fatalf("err = %v, want a too-large error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.buf, tc.want) {
				t.Fatalf("read %d bytes, want %d", len(b.buf), len(tc.want))
			}
			b.release()
		})
	}
}

// TestReadBody_DeclaredLengthAloneAllocatesLittle: a client declaring 10
// MiB and sending a few bytes makes the gateway hold initialBodyBytes,
// not 10 MiB, while it waits.
func TestReadBody_DeclaredLengthAloneAllocatesLittle(t *testing.T) {
	var p bodyPools
	r := iotest.ErrReader(errors.New("client went away"))
	if _, err := p.readBody(io.MultiReader(strings.NewReader("{"), r), 10<<20, 10<<20, nil); err == nil {
		t.Fatal("a broken body was accepted")
	}
	buf := p.get(1)
	if cap(buf) > 4096 {
		t.Errorf("smallest class has cap %d", cap(buf))
	}
	b := p.get(initialBodyBytes + 1)
	if cap(b) > 2*initialBodyBytes {
		t.Errorf("cap %d", cap(b))
	}
}

// TestBody_ReleasedByTheLastHolder: the buffer goes back to the pool only
// when the handler and every outgoing request's body are done.
func TestBody_ReleasedByTheLastHolder(t *testing.T) {
	var p bodyPools
	b, err := p.readBody(strings.NewReader(`{"model":"m"}`), 13, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.hold()
	r := &bodyReader{b: b, data: b.buf}
	b.release() // the handler
	if b.buf == nil {
		t.Fatal("released while a request body still reads it")
	}
	got, _ := io.ReadAll(r)
	if string(got) != `{"model":"m"}` {
		t.Fatalf("read %q", got)
	}
	_ = r.Close()
	_ = r.Close() // idempotent
	if b.buf != nil {
		t.Fatal("not released after the last holder")
	}
}
