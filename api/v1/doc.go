// Package v1 holds the Go types of the Kubernetes API group
// inference.networking.k8s.io, version v1: the InferencePool, a set of model
// server pods (selected by labels, served on one or more target ports) that
// a gateway routes inference requests to through an endpoint picker.
//
// The wire schema (field names, defaults, limits) is fixed by the Gateway API
// Inference Extension so that the same manifests work with igw, in a
// cluster and in igw's standalone YAML file alike; the Go code is igw's own.
// The kubebuilder markers in the comments are the source of truth:
// `make generate` (controller-gen) writes zz_generated.deepcopy.go and the
// CRD under config/crd/bases, and `make verify-generate` fails on drift.
// A CRD in a *.k8s.io group is refused without the api-approved.kubernetes.io
// annotation; InferencePool's points at the upstream approval of the API whose
// schema it copies.
//
// +kubebuilder:object:generate=true
// +groupName=inference.networking.k8s.io
package v1
