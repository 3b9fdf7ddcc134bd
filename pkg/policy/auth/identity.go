package auth

import "github.com/igw-dev/igw/pkg/config"

// Identity is who a request is for, as its credential proved: the grant of
// an API key or of a JWT. It is immutable and shared by every request made
// with the same API key, so nothing may modify it.
type Identity struct {
	// Method is how the caller authenticated: MethodAPIKey or MethodJWT.
	Method string
	// Subject identifies the credential: the key's id for an API key, the
	// token's tenant claim value and sub for a JWT. Quotas with scope Key
	// count per Subject.
	Subject string
	// Tenant is the flow-control fairness id and the unit of tenant quotas.
	Tenant string
	// Models are the model patterns the credential may request (see
	// ModelAllowed).
	Models []string
	// Objective is the InferenceObjective applied when the client names
	// none; AllowedObjectives are the others it may name.
	Objective         string
	AllowedObjectives []string
	// Quotas are the QuotaPolicies charged for the requests, resolved at
	// load (never a dangling name). They are the configuration objects
	// (*quota.QuotaPolicy): package quota builds on this one, so this one
	// only carries them to it.
	Quotas []config.Object
}

// Authentication methods, as reported in Identity.Method.
const (
	MethodAPIKey = "api-key"
	MethodJWT    = "jwt"
)

// AllowsModel reports whether the identity may request model.
func (id *Identity) AllowsModel(model string) bool {
	return ModelAllowed(id.Models, model)
}

// AllowsObjective reports whether the client may select objective with
// the x-gateway-inference-objective header: it is the identity's default
// or one of its allowed objectives.
func (id *Identity) AllowsObjective(objective string) bool {
	if objective == id.Objective {
		return true
	}
	for _, o := range id.AllowedObjectives {
		if o == objective {
			return true
		}
	}
	return false
}
