package auth

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/discovery/static"
)

// stubQuotaPolicy stands in for package quota's QuotaPolicy, which this
// package only refers to by kind and name: quota builds on auth, so auth's
// tests cannot import it.
type stubQuotaPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              json.RawMessage `json:"spec,omitempty"`
}

// testSchema is what the tests' files hold: a pool with its server, the
// authentication kinds, and quota policies.
var testSchema = config.NewSchema(
	static.InferencePoolKind(), static.ModelServerKind(), APIKeysKind(), AuthPolicyKind(),
	config.Kind{Kind: QuotaPolicyKind, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New: func() config.Object { return new(stubQuotaPolicy) }},
)
