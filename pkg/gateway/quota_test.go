package gateway

import (
	"context"
	"net/http"
	"testing"

	"github.com/igw-dev/igw/internal/testredis"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/quota"
)

func quotaYAML(requestsPerMinute, storeDoc string) string {
	return poolYAML("p", "127.0.0.1:1") + routeYAML("r", "  backends: [{pool: p}]\n") + `---
apiVersion: igw.dev/v1alpha1
kind: QuotaPolicy
metadata: {name: team}
spec:
  limits:
  - {window: 1m, requests: ` + requestsPerMinute + `}
---
apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-a}
spec:
  quotas: [team]
  keys: [{id: a, hash: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
` + storeDoc
}

// admitOnce runs the server's current Admission for a request of the team
// key, and settles it as a successful one.
func admitOnce(t *testing.T, s *Server) (*director.Admitted, *director.Refusal) {
	t.Helper()
	rt := s.Director().Policy()
	if rt.Admission == nil {
		t.Fatal("no admission for a configuration with quotas")
	}
	var quotas []config.Object
	for _, q := range quota.Policies(s.Engine().Config()) {
		quotas = append(quotas, q)
	}
	id := &auth.Identity{Subject: "a", Tenant: "team-a", Quotas: quotas}
	parsed := &openai.Parsed{Kind: openai.KindChat, Model: "m", MaxTokens: 5}
	a, rej := s.Director().Policy().Admission.Admit(context.Background(), &director.AdmissionRequest{Parsed: parsed, PromptTokens: 3, Identity: id})
	if a != nil && a.Release != nil {
		a.Release(openai.Usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}, http.StatusOK)
	}
	return a, rej
}

// Counters survive a reload that keeps the QuotaStore: a new limit applies
// to what was already counted. A reload that changes the store starts
// over with the new one.
func TestQuotaAdmission_CountersSurviveReloadsOfTheSameStore(t *testing.T) {
	s, err := New(parseConfig(t, quotaYAML("3", "")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, rej := admitOnce(t, s); rej != nil {
			t.Fatalf("request %d refused: %v", i, rej.Err)
		}
	}
	if err := s.Reload(parseConfig(t, quotaYAML("2", ""))); err != nil {
		t.Fatal(err)
	}
	_, rej := admitOnce(t, s)
	if rej == nil || rej.Err.Status() != http.StatusTooManyRequests || rej.Reason != quota.DroppedReasonQuotaExceeded {
		t.Fatalf("third request under a reloaded limit of 2: %+v", rej)
	}
	if got := rej.Header.Get(quota.HeaderRemainingRequests); got != "0" {
		t.Errorf("remaining %q", got)
	}
	srv := testredis.Start(t)
	redisDoc := "---\napiVersion: igw.dev/v1alpha1\nkind: QuotaStore\nmetadata: {name: q}\nspec:\n  type: Redis\n  redis: {address: \"" + srv.Addr + "\", timeout: 2s}\n"
	if err := s.Reload(parseConfig(t, quotaYAML("2", redisDoc))); err != nil {
		t.Fatal(err)
	}
	a, rej := admitOnce(t, s)
	if rej != nil {
		t.Fatalf("refused by the new, empty Redis store: %v", rej.Err)
	}
	if a.Header.Get(quota.HeaderRemainingRequests) != "1" {
		t.Errorf("headers %v", a.Header)
	}
	if n, _ := srv.CommandCalls("eval"); n != 1 {
		t.Errorf("the Redis store ran %d EVALs, want 1", n)
	}
	s.Engine().Close()
}

func TestQuotaAdmission_NoIdentityOrNoPolicyIsNotCounted(t *testing.T) {
	s, err := New(parseConfig(t, quotaYAML("1", "")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, rej := s.Director().Policy().Admission.Admit(context.Background(), &director.AdmissionRequest{Parsed: &openai.Parsed{Model: "m"}})
	if a != nil || rej != nil {
		t.Fatalf("a request without identity was counted: %v %v", a, rej)
	}
	// A configuration without QuotaPolicies has no Admission at all.
	s2, err := New(parseConfig(t, poolYAML("p", "127.0.0.1:1")+routeYAML("r", "  backends: [{pool: p}]\n")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Director().Policy().Admission != nil {
		t.Fatal("an Admission without quotas")
	}
}
