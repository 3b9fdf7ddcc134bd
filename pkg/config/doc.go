// Package config loads igw's standalone configuration: one YAML file of
// several documents separated by "---", each one resource.
//
// Resources that exist in Kubernetes keep their exact Kubernetes kind and
// schema, so the same YAML moves to a cluster unchanged:
//
//   - InferencePool (inference.networking.k8s.io/v1): a set of model servers
//     selected by labels, on one or more target ports.
//   - InferenceObjective and InferenceModelRewrite
//     (inference.networking.x-k8s.io/v1alpha2): request priorities and
//     weighted model-name rewrites for a pool.
//   - EndpointPickerConfig (inference.networking.x-k8s.io/v1alpha1 or
//     llm-d.ai/v1alpha1): the scheduler's plugins and profiles. It is kept as
//     written, in Config.EndpointPickerConfig, for the scheduler to parse.
//
// What only igw has lives in the group igw.dev/v1alpha1:
//
//   - Gateway: the listen addresses, body size limit and timeouts (at most
//     one; optional).
//   - ModelServer: a static model server that stands in for a pod; pools
//     select ModelServers by label exactly as they select pods.
//   - Route: which requests (by body model, path and headers) go to which
//     weighted backends (InferencePools or plain URLs), and which
//     RequestGuard they pass first.
//   - RequestGuard: per-route limits on size, shape, length and content.
//   - APIKeys and AuthPolicy: API keys (stored as SHA-256 hashes, inline or
//     in a keys file) and JWT validation against a JWKS file; either turns
//     authentication on.
//   - QuotaPolicy and QuotaStore: token budgets per key, tenant and model,
//     and where their counters live (memory or Redis).
//
// The types document every field with an example; testdata/standalone.yaml
// is a complete file. Files a document names (keys files, JWKS files) are
// read at every load, relative to the configuration file.
//
// # Validation
//
// Parsing is strict, so that a typo fails at load rather than silently
// changing behaviour: unknown fields, values of the wrong type, invalid
// values, duplicate names, references to missing pools, pools that resolve
// to no endpoint and routes that match exactly the same requests are all
// errors. Parse reports all of them at once; each names the file, the
// document and the field:
//
//	standalone.yaml: document 3 (InferencePool "llama"): spec.targetPorts[0].number: must be 1..65535, not 0
//
// Documents are numbered from 1, counting only non-empty ones. Defaults are
// applied during parsing, so a Config never has an unset defaulted field.
//
// YAML is read as Kubernetes reads it (YAML 1.1): unquoted yes, no, on, off,
// y and n are booleans and 8000 is a number, so a model name, label value
// or header value that looks like one must be quoted; the error says so.
//
// # Reloading
//
// A Watcher reloads the file when it or a file it names (keys, JWKS)
// changes, or on SIGHUP, and hands each valid new Config to a callback; an
// invalid file keeps the previous Config in effect.
//
// This package depends only on package api and apimachinery; data planes
// and discovery turn a Config into datastore state.
package config
