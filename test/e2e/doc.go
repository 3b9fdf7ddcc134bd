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
//
// Every test is bounded in requests and in time, and asserts on where
// requests went (the x-gateway-destination-endpoint-served header) and on
// status codes rather than on latencies, so that it holds on a loaded
// machine under -race.
//
// Run: go test -race -count=1 ./test/e2e/...
package e2e
