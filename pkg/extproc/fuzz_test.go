package extproc_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

// FuzzEPPBody sends arbitrary request bodies, cut at arbitrary points,
// through the picker in full-duplex mode: the picker must never fail the
// stream, and must answer either with a valid decision (the destination
// header equal to the metadata, the body forwarded naming a model) or with
// an ImmediateResponse of status 4xx/5xx. The seed corpus is in
// testdata/fuzz/FuzzEPPBody.
func FuzzEPPBody(f *testing.F) {
	e := newPickerEnv(f, envOptions{replicas: 2})
	f.Fuzz(func(t *testing.T, body []byte, cut1, cut2 uint16, buffered bool) {
		req := &envoytest.Request{Headers: chatHeaders(), Body: body, Splits: []int{int(cut1), int(cut2)}}
		if buffered {
			req.Mode = envoytest.Buffered
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := envoytest.Exchange(ctx, e.conn, req, nil)
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		if res.Immediate != nil {
			if s := res.Status(); s < 400 || s > 599 {
				t.Fatalf("immediate response with status %d", s)
			}
			var eb struct {
				Error struct{ Message string } `json:"error"`
			}
			if json.Unmarshal(res.Immediate.GetBody(), &eb) != nil || eb.Error.Message == "" {
				t.Fatalf("error body is not an OpenAI error: %s", res.Immediate.GetBody())
			}
			return
		}
		dest := res.RequestHeaders[extproc.HeaderDestinationEndpoint]
		if dest == "" || dest != res.MetadataString(extproc.MetadataNamespaceLB, extproc.HeaderDestinationEndpoint) {
			t.Fatalf("decision header %q and metadata differ", dest)
		}
		var fwd struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal(res.Body, &fwd); err != nil || fwd.Model == "" {
			t.Fatalf("forwarded body names no model (%v): %q", err, res.Body)
		}
	})
}
