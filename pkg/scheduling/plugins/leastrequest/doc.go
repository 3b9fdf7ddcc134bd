// Package leastrequest is the least-request scorer: it prefers the
// endpoints with the fewest requests igw itself has in flight to them. It
// needs no model-server metrics at all, so it is the baseline a plain
// Kubernetes Service or Envoy's LEAST_REQUEST balancer would give, and a
// sensible choice for endpoints that export no metrics.
//
// Type name: least-request (a Scorer).
//
// Score: with n igw's in-flight count of each candidate
// (datastore.Endpoint.InFlight, loaded once per cycle), (max−n)/(max−min)
// over the candidates of the cycle; all 1 when equal. Requests sent by
// other gateways are invisible to it.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: least-request
//	- type: max-score-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: least-request
//	  - pluginRef: max-score-picker
package leastrequest
