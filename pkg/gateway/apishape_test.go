package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/openai"
)

// TestGateway_APIShapes covers what clients of each API read: a model
// retrieved by id from the routes, OpenAI's model_not_found, Anthropic's
// error shape on /v1/messages, and a model server's plain-text error
// turned into a JSON error of the API's shape with its status.
func TestGateway_APIShapes(t *testing.T) {
	a := newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("pool-a", a.addr),
		routeYAML("a", "  matches: [{model: {value: org/model-a}}]\n  backends: [{pool: pool-a}]\n"),
	), Options{})
	waitCandidates(t, s, "pool-a", 1)
	c := newClient(t)

	r := get(t, c, "http://"+s.Addr()+"/v1/models/org/model-a")
	var m openai.Model
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &m) != nil || m.ID != "org/model-a" || m.Object != "model" {
		t.Fatalf("GET /v1/models/org/model-a: %d %s", r.status, r.body)
	}
	r = get(t, c, "http://"+s.Addr()+"/v1/models/nope")
	if e, ok := openai.ParseErrorBody([]byte(r.body)); r.status != http.StatusNotFound || !ok || e.Code != openai.CodeModelNotFound || e.Type != openai.ErrTypeInvalidRequest {
		t.Fatalf("GET /v1/models/nope: %d %s", r.status, r.body)
	}

	r = post(t, c, s, "/v1/messages", `{"model":"other","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	var ae struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	if r.status != http.StatusNotFound || json.Unmarshal([]byte(r.body), &ae) != nil || ae.Type != "error" || ae.Error.Type != "not_found_error" {
		t.Fatalf("unknown model on /v1/messages: %d %s", r.status, r.body)
	}
	r = post(t, c, s, "/v1/messages", `{"model":`)
	if r.status != http.StatusBadRequest || json.Unmarshal([]byte(r.body), &ae) != nil || ae.Error.Type != "invalid_request_error" {
		t.Fatalf("malformed JSON on /v1/messages: %d %s", r.status, r.body)
	}

	a.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
	r = post(t, c, s, "/v1/chat/completions", chatBody("org/model-a"))
	e, ok := openai.ParseErrorBody([]byte(r.body))
	if r.status != http.StatusNotFound || !ok || !strings.Contains(e.Message, "404 page not found") || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("plain-text 404 of the model server: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	r = post(t, c, s, "/v1/messages", `{"model":"org/model-a","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if r.status != http.StatusNotFound || json.Unmarshal([]byte(r.body), &ae) != nil || ae.Error.Type != "not_found_error" {
		t.Fatalf("plain-text 404 on /v1/messages: %d %s", r.status, r.body)
	}
	a.setHandler(answerStatus(http.StatusBadRequest)) // a JSON error passes unchanged
	r = post(t, c, s, "/v1/chat/completions", chatBody("org/model-a"))
	if r.status != http.StatusBadRequest {
		t.Fatalf("JSON error: %d %s", r.status, r.body)
	}
}
