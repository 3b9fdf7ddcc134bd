package extproc_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

// The server's codec and frame buffers are pooled without zeroing: bodies
// of many sizes through concurrent streams must come back byte for byte,
// with nothing left over from an earlier message in a reused buffer.
func TestServer_PooledBuffersKeepBodiesApart(t *testing.T) {
	conn := serveGRPC(t, extproc.NewGRPCServer(extproc.NewFixedProcessor("127.0.0.1:8000"), 0, nil))
	sizes := []int{10, 900, 5000, 40_000, 150_000, 300_000}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 12 {
				n := sizes[(w+i)%len(sizes)]
				body := make([]byte, n)
				for j := range body {
					body[j] = byte('a' + rng.IntN(26))
				}
				res, err := envoytest.Exchange(context.Background(), conn, &envoytest.Request{Headers: chatHeaders(), Body: body, ChunkSize: 16 << 10}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(res.Body, body) {
					t.Errorf("worker %d request %d: %d bytes sent, %d echoed, equal %v", w, i, n, len(res.Body), bytes.Equal(res.Body, body))
					return
				}
			}
		}()
	}
	wg.Wait()
}
