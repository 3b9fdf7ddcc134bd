// Package auth authenticates inference requests in the standalone gateway:
// API keys and JSON Web Tokens, configured by the APIKeys and AuthPolicy
// kinds it declares (kind.go).
//
// A client sends its credential as `Authorization: Bearer <credential>` or
// `x-api-key: <key>`. An API key is looked up by its SHA-256: the gateway
// holds only hashes, in a map from hash to the key's grant, and confirms
// the match with a constant-time comparison, so neither the keys nor the
// timing of a lookup reveal a key. A bearer credential shaped like a JWT
// (three base64url parts) is verified, when an AuthPolicy configures JWT,
// against the public keys of a JWKS file with the standard library's
// crypto (RS256/384/512, PS256, ES256/384; never "none" or HMAC), and its
// exp, nbf, iss and aud claims are checked.
//
// The result is an Identity: a tenant (which becomes the flow-control
// fairness id), the models it may request, its default and allowed
// InferenceObjectives and its quotas. Failures are OpenAI-style errors: 401
// with a WWW-Authenticate challenge for a missing or invalid credential,
// 403 for a model or objective the credential does not allow. The
// credential headers are removed before the request is forwarded, so model
// servers never see a client's key.
package auth
