package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/sim"
)

// streamRead is a streamed response read chunk by chunk.
type streamRead struct {
	status int
	header http.Header
	body   []byte
	reads  [][]byte // the data of every Read that returned some
}

// readStream sends body to url and records every read of the response.
func readStream(ctx context.Context, t *testing.T, c *http.Client, url string, body []byte) streamRead {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out := streamRead{status: resp.StatusCode, header: resp.Header}
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			out.reads = append(out.reads, bytes.Clone(buf[:n]))
			out.body = append(out.body, buf[:n]...)
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading the stream from %s: %v", url, err)
		}
	}
}

var (
	sseID      = regexp.MustCompile(`"id":"[^"]*"`)
	sseCreated = regexp.MustCompile(`"created":[0-9]+`)
)

// normalizeSSE blanks the fields of a stream that legitimately differ
// between two servers answering the same request: the id (it embeds the
// server's port and request counter) and the creation time.
func normalizeSSE(b []byte) []byte {
	b = sseID.ReplaceAll(b, []byte(`"id":"<id>"`))
	return sseCreated.ReplaceAll(b, []byte(`"created":0`))
}

// TestGateway_StreamIsByteForByteTheReplicasStream: a streamed chat
// completion with a fixed seed through the gateway is the same SSE byte
// stream as the one the replica sends directly (but for id and created),
// and it reaches the client incrementally, not in one piece at the end.
func TestGateway_StreamIsByteForByteTheReplicasStream(t *testing.T) {
	t.Parallel()
	// A slow time scale, so the tokens of the stream are spread in time.
	fleet := startFleet(t, 2, func(c *sim.Config) { c.TimeScale = 2 })
	gw := startGateway(t, onePool(t, fleet.Addrs()))
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)

	seed := int64(42)
	// A prompt shorter than one KV block, so neither answer can report
	// cached prompt tokens whichever replica serves it.
	body := chat{Model: testModel, User: "Count to ten.", MaxTokens: 24, IgnoreEOS: true, Stream: true, Usage: true, Seed: &seed}.body()

	direct := readStream(ctx, t, c, chatURL(fleet.Addrs()[0]), body)
	via := readStream(ctx, t, c, chatURL(gw.Addr()), body)
	if direct.status != http.StatusOK || via.status != http.StatusOK {
		t.Fatalf("status direct %d, through the gateway %d:\n%s\n%s", direct.status, via.status, direct.body, via.body)
	}
	if ct := via.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type through the gateway %q, want text/event-stream", ct)
	}
	if via.header.Get(hdrServed) == "" {
		t.Errorf("no %s header on the stream", hdrServed)
	}
	if !bytes.HasSuffix(direct.body, []byte("data: [DONE]\n\n")) || bytes.Count(direct.body, []byte("data: ")) < 24 {
		t.Fatalf("the replica's stream is not a complete SSE stream of 24 tokens:\n%s", direct.body)
	}
	if got, want := normalizeSSE(via.body), normalizeSSE(direct.body); !bytes.Equal(got, want) {
		t.Errorf("stream through the gateway differs from the replica's (normalized):\ngateway:\n%s\nreplica:\n%s", got, want)
	}
	if len(via.reads) < 2 || bytes.Contains(via.reads[0], []byte("[DONE]")) {
		t.Errorf("the stream arrived in %d read(s), the first already holding [DONE]; want it incrementally", len(via.reads))
	}
	t.Logf("stream of %d bytes arrived through the gateway in %d reads", len(via.body), len(via.reads))
}
