// Package charttest holds the test of config/charts/inferencepool that
// `make chart-test` runs: Helm (built from its Go module into bin/helm)
// lints and renders the chart for every provider and several value sets,
// and kubectl (built from k8s.io/kubectl into bin/kubectl) applies each
// rendering with `--server-side --dry-run=server` to a real kube-apiserver
// and etcd started by controller-runtime's envtest, with igw's CRDs from
// config/crd/bases installed. It lives in the Helm tool module, not in
// github.com/igw-dev/igw, so Helm's Kubernetes dependencies never reach
// igw's go.mod.
//
// Last, it installs the chart for real and runs bin/igw with the rendered
// Deployment's command line as the chart's ServiceAccount, until the picker
// reports ready for a pod the pool selects.
//
// Environment: KUBEBUILDER_ASSETS (a directory with kube-apiserver and
// etcd), HELM, KUBECTL and IGW (paths of the binaries; default bin/helm,
// bin/kubectl and bin/igw at the repository root).
package charttest
