// Package e2e holds igw's end-to-end tests: the standalone gateway
// (`igw serve`, or gateway.Server in the test process) in front of the
// model-server simulator (`igw sim`, or sim.Fleet in the test process),
// speaking real HTTP and SSE on 127.0.0.1 only.
//
// Two styles:
//
//   - In-process: a sim.Fleet on ephemeral ports and a gateway.Server built
//     from a YAML template with those ports. Fast, and the tests can look
//     inside (the datastore's candidate set, the engines' state).
//   - Real processes: TestMain builds the igw binary once; tests run
//     `igw sim` and `igw serve` as children, on ports the children pick
//     themselves (port 0) and print, so ports never collide. These cover
//     what only a process has: signals, exit codes, stderr, a replica
//     killed with SIGKILL.
//   - Kubernetes mode (kube_test.go): when KUBEBUILDER_ASSETS is set (make
//     unit sets it), TestMain also starts a real kube-apiserver and etcd with
//     igw's CRDs (internal/kubetest); `igw epp` and `igw bbr` processes run
//     against it as the ServiceAccounts of config/rbac, and pods' status.podIP
//     are loopback addresses (127.0.0.2, ...) where simulated model servers
//     listen. Without the variable those tests skip and say how to run them.
//
// Every test is bounded in requests and in time, and asserts on where
// requests went (the x-gateway-destination-endpoint-served header) and on
// status codes rather than on latencies, so that it holds on a loaded
// machine under -race.
//
// Run: go test -race -count=1 ./test/e2e/... (with
// KUBEBUILDER_ASSETS=$PWD/bin/envtest after `make envtest-assets` for the
// Kubernetes tests).
package e2e
