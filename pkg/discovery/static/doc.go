// Package static is igw's discovery without Kubernetes: the configuration
// file's InferencePools select its ModelServers exactly as a pool selects
// pods in a cluster, and Apply hands the datastore the resulting endpoints
// with the pools' InferenceObjectives and InferenceModelRewrites. It is
// level-based, like the Kubernetes reconcilers that feed the same store
// in a cluster (package kube): every configuration is applied whole, so a
// reload that removed something heals by itself.
//
// The package owns the configuration kinds it consumes, registered by the
// engine (see package config):
//
//   - InferencePool (inference.networking.k8s.io/v1), InferenceObjective
//     and InferenceModelRewrite (inference.networking.x-k8s.io/v1alpha2):
//     the Kubernetes kinds, with their exact Kubernetes schema (package
//     api), so the same YAML moves to a cluster unchanged. Their
//     validation here mirrors the CRDs' rules, which the API server applies
//     in a cluster.
//   - ModelServer (igw.dev/v1alpha1): a static model server that stands in
//     for a pod.
//
// A file's pool must resolve to at least one endpoint: a static pool with
// nothing to route to is a typo, not a state to wait out.
package static
