// Package v1alpha2 holds the Go types of the Kubernetes API group
// inference.networking.x-k8s.io, version v1alpha2: InferenceObjective (a
// named request priority clients select with the
// x-gateway-inference-objective header) and InferenceModelRewrite (weighted
// rewriting of the requested model name, for canary and blue-green model or
// LoRA rollouts). Both refer to an InferencePool of package api/v1.
//
// The wire schema is fixed by the Gateway API Inference Extension so that
// the same manifests work with igw in a cluster and in igw's standalone YAML
// file; the Go code is igw's own. The kubebuilder markers are the source
// of truth: `make generate` (controller-gen) writes zz_generated.deepcopy.go
// and the CRDs under config/crd/bases, and `make verify-generate` fails on
// drift.
//
// +kubebuilder:object:generate=true
// +groupName=inference.networking.x-k8s.io
package v1alpha2
