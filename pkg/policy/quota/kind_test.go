package quota_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/quota"
)

// The QuotaPolicy and QuotaStore kinds, parsed as igw serve parses them.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema()

func TestParse_SecurityInvalidValues(t *testing.T) {
	quota := "apiVersion: igw.dev/v1alpha1\nkind: QuotaPolicy\nmetadata: {name: q}\nspec:\n"
	store := "apiVersion: igw.dev/v1alpha1\nkind: QuotaStore\nspec:\n"
	tests := []struct {
		name, doc, want string
	}{
		{"quota without limits", quota + "  scope: Key\n", `(QuotaPolicy "q"): spec.limits: required`},
		{"quota empty window", quota + "  limits: [{window: 1m}]\n", `(QuotaPolicy "q"): spec.limits[0]: set at least one of`},
		{"quota window too long", quota + "  limits: [{window: 1000h, requests: 1}]\n", `(QuotaPolicy "q"): spec.limits[0].window: must be 1s..744h0m0s, not 1000h0m0s`},
		{"quota duplicate window", quota + "  limits: [{window: 1m, requests: 1}, {window: 60s, requests: 2}]\n",
			`(QuotaPolicy "q"): spec.limits[1].window: duplicate window 1m0s (also limits[0])`},
		{"quota stream", quota + "  limits: [{window: 1m, requests: 1}]\n  stream: cut\n", `(QuotaPolicy "q"): spec.stream: must be Cut or Finish, not "cut"`},
		{"quota scope", quota + "  limits: [{window: 1m, requests: 1}]\n  scope: Model\n", `(QuotaPolicy "q"): spec.scope: must be Key or Tenant, not "Model"`},
		{"store redis without address", store + "  type: Redis\n", `(QuotaStore): spec.redis: required for type Redis`},
		{"store bad address", store + "  type: Redis\n  redis: {address: localhost}\n", `(QuotaStore): spec.redis.address: must be host:port`},
		{"store failure mode", store + "  failureMode: Closed\n", `(QuotaStore): spec.failureMode: must be FailOpen or FailClose, not "Closed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configtest.Load(t, schema, map[string]string{"x.json": `{"keys":[]}`}, configtest.ServerDoc, configtest.PoolDoc, tt.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "igw.yaml: document 3 "+tt.want) {
				t.Errorf("error:\n%v\nwant a line containing:\n%s", err, tt.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("not a *config.Error: %T", err)
			}
		})
	}
}

func TestParse_SecuritySingletons(t *testing.T) {
	store := "apiVersion: igw.dev/v1alpha1\nkind: QuotaStore\nspec: {type: Memory}\n"
	_, err := schema.Parse("x.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, store, store))
	if err == nil || !strings.Contains(err.Error(), "only one QuotaStore is allowed; the first is document 3") {
		t.Errorf("err = %v", err)
	}
}

// TestKind_IsTheOneAuthRefersTo: package auth refers to quota policies by
// kind name, since it cannot import this package.
func TestKind_IsTheOneAuthRefersTo(t *testing.T) {
	if quota.KindQuotaPolicy != auth.QuotaPolicyKind || quota.PolicyKind().Kind != auth.QuotaPolicyKind {
		t.Errorf("quota declares %q, auth refers to %q", quota.KindQuotaPolicy, auth.QuotaPolicyKind)
	}
}
