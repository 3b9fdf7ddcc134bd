package engine_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// policiesBenchConfig is a guarded route (every limit on, two deny rules)
// and an API key charged to an in-memory QuotaPolicy far from its limits.
const policiesBenchConfig = `
apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: llama}
spec: {backends: [{url: "http://127.0.0.1:8000"}], guard: public}
---
apiVersion: igw.dev/v1alpha1
kind: RequestGuard
metadata: {name: public}
spec:
  maxBodySize: 1Mi
  maxMessages: 64
  maxPromptTokens: 8000
  maxTokens: {limit: 2048}
  validate: true
  maxHeaders: 64
  maxHeaderSize: 16Ki
  denyRules:
  - {name: ignore-previous, pattern: '(?i)ignore (all )?previous instructions'}
  - {name: system-prompt, pattern: '(?i)(reveal|print) your system prompt', mode: Log}
---
apiVersion: igw.dev/v1alpha1
kind: QuotaPolicy
metadata: {name: team}
spec:
  limits:
  - {window: 1m, requests: 1000000000, totalTokens: 1000000000000}
  - {window: 24h, totalTokens: 1000000000000000}
---
apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-a}
spec:
  quotas: [team]
  keys: [{id: a, hash: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
`

// BenchmarkPolicies_AuthGuard is what the Director's lifecycle costs a
// request before scheduling: the one parse, route selection, the route's
// guard (all limits, validation, deny rules), authentication by API key
// and, in the /quota variant, the in-memory quota reservation and its
// settlement at Finish. The route's backend is a URL, so no scheduling
// cycle is included. Target: under 10 µs besides the parse.
func BenchmarkPolicies_AuthGuard(b *testing.B) {
	body := []byte(`{"model":"llama-3.1-8b","stream":false,"max_tokens":128,"temperature":0.7,"messages":[` +
		`{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely."},` +
		`{"role":"user","content":"Write two sentences about the sea, in the style of a ship's log."}]}`)
	ctx := context.Background()
	run := func(b *testing.B, quotas bool) {
		doc := policiesBenchConfig
		if !quotas {
			doc = strings.Replace(doc, "  quotas: [team]\n", "", 1)
		}
		cfg, err := schema.Parse("bench.yaml", []byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		e, err := engine.New(cfg, engine.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		d := e.Director()
		b.ReportAllocs()
		for b.Loop() {
			header := http.Header{
				"Content-Type": {"application/json"}, "User-Agent": {"OpenAI/Python 1.54.0"}, "Accept": {"application/json"},
				"X-Stainless-Lang": {"python"}, "X-Stainless-Os": {"Linux"}, auth.HeaderAuthorization: {"Bearer foo"},
			}
			x, reply := d.Begin(ctx, &director.Inbound{Method: http.MethodPost, Path: "/v1/chat/completions", Header: header, Body: body})
			if reply != nil {
				b.Fatalf("%d %s", reply.Status, reply.Body)
			}
			x.ResponseHeaders(http.StatusOK, "application/json")
			x.ResponseBody([]byte(`{"usage":{"prompt_tokens":40,"completion_tokens":100}}`), true)
			x.Finish(ctx, nil)
		}
	}
	b.Run("auth+guard", func(b *testing.B) { run(b, false) })
	b.Run("auth+guard+quota", func(b *testing.B) { run(b, true) })
}
