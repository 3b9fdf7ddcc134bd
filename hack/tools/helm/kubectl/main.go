// Command kubectl is the upstream kubectl, built from the k8s.io/kubectl
// module Helm already depends on, so `make chart-test` can run
// `kubectl apply --server-side --dry-run=server` against the test API server
// at the same Kubernetes minor version (Debian's kubernetes-client is kubectl
// 1.20, far outside kubectl's one-minor-version skew policy).
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
