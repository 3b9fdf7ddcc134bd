package gateway

import (
	"context"
	"net/http"
	"testing"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/gateway/auth"
	"github.com/igw-dev/igw/pkg/openai"
)

// policiesBenchConfig is a guarded route (every limit on, two deny rules)
// and an API key charged to an in-memory QuotaPolicy far from its limits.
const policiesBenchConfig = `
apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: s, labels: {app: llama}}
spec: {address: 127.0.0.1}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec: {selector: {matchLabels: {app: llama}}, targetPorts: [{number: 8000}]}
---
apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: llama}
spec: {backends: [{pool: llama}], guard: public}
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

// BenchmarkPolicies_AuthGuard is what the protection layer adds to one
// request, after the body is parsed (which every request pays anyway) and
// before the Director: the route's guard (all limits, validation, deny
// rules), authentication by API key and, in the /quota variant, the
// in-memory quota reservation and its settlement. Target: under 10 µs.
func BenchmarkPolicies_AuthGuard(b *testing.B) {
	cfg, err := config.Parse("bench.yaml", []byte(policiesBenchConfig))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	rt := s.rt.Load()
	cr := rt.routes[cfg.Routes[0]]
	body := []byte(`{"model":"llama-3.1-8b","stream":false,"max_tokens":128,"temperature":0.7,"messages":[` +
		`{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely."},` +
		`{"role":"user","content":"Write two sentences about the sea, in the style of a ship's log."}]}`)
	parsed, err := openai.ParseRequest(openai.KindChat, body)
	if err != nil {
		b.Fatal(err)
	}
	header := http.Header{
		"Content-Type": {"application/json"}, "User-Agent": {"OpenAI/Python 1.54.0"}, "Accept": {"application/json"},
		"X-Stainless-Lang": {"python"}, "X-Stainless-Os": {"Linux"},
	}
	r := &http.Request{Header: header}
	ctx := context.Background()
	run := func(b *testing.B, admission bool) {
		b.ReportAllocs()
		for b.Loop() {
			header.Set(auth.HeaderAuthorization, "Bearer foo")
			ex := &exchange{promptTokens: -1, kind: openai.KindChat}
			if _, v := s.checkGuard(cr.guard, r, body, parsed, ex); v != nil {
				b.Fatal(v.Err)
			}
			id, f := authenticate(rt.auth, r, parsed.Model)
			if f != nil {
				b.Fatal(f.Err)
			}
			ex.identity = id
			if !admission {
				continue
			}
			a, rej := s.admit(ctx, rt, &AdmissionRequest{Parsed: parsed, Identity: id, Route: cr.name}, ex)
			if rej != nil {
				b.Fatal(rej.Err)
			}
			a.Release(openai.Usage{PromptTokens: 40, CompletionTokens: 100}, http.StatusOK)
		}
	}
	b.Run("auth+guard", func(b *testing.B) { run(b, false) })
	b.Run("auth+guard+quota", func(b *testing.B) { run(b, true) })
}
