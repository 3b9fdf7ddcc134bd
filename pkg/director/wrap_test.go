package director

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/openai"
)

// TestExchange_WrapsNonJSONErrorsInTheAPIsShape: a model server's
// plain-text error becomes a JSON error of the API's shape with its status
// (for both planes: they send ResponseHeader and what ResponseBody
// returns); a JSON error passes unchanged.
func TestExchange_WrapsNonJSONErrorsInTheAPIsShape(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	x := begin(t, f, nil)
	x.Try(context.Background(), "10.0.0.1:8000")
	if !x.ResponseHeaders(http.StatusNotFound, "text/plain; charset=utf-8") {
		t.Fatal("a replaced body must drop Content-Length")
	}
	if ct := x.ResponseHeader.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	out := append(x.ResponseBody([]byte("404 page "), false), x.ResponseBody([]byte("not found\n"), true)...)
	e, ok := openai.ParseErrorBody(out)
	if !ok || e.Type != openai.ErrTypeInvalidRequest || !strings.Contains(e.Message, "404 Not Found: 404 page not found") {
		t.Fatalf("wrapped body %s", out)
	}
	// A later response of the same exchange (a plane that saw a refusal
	// first) is not wrapped.
	if x.ResponseHeaders(http.StatusOK, "text/event-stream"); x.ResponseHeader.Get("Content-Type") != "" {
		t.Fatalf("the wrapped error's Content-Type stayed: %v", x.ResponseHeader)
	}
	if got := x.ResponseBody([]byte("data: {}\n\n"), false); string(got) != "data: {}\n\n" {
		t.Fatalf("a response after a wrapped one was changed: %q", got)
	}
	x.Finish(context.Background(), nil)

	x = begin(t, f, nil)
	x.Try(context.Background(), "10.0.0.1:8000")
	body := []byte(`{"error":{"message":"m","type":"NotFoundError","code":404}}`)
	if x.ResponseHeaders(http.StatusNotFound, "application/json") {
		t.Fatal("a JSON error is not rewritten")
	}
	if got := x.ResponseBody(body, true); string(got) != string(body) {
		t.Fatalf("a JSON error changed: %s", got)
	}
	x.Finish(context.Background(), nil)
}
