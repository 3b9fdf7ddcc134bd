// Package roundrobin is the round-robin-picker plugin: it cycles over the
// candidates in a stable order, ignoring scores — the classic load-balancer
// baseline that prefix-aware routing is compared against.
//
// Type name: round-robin-picker (a Picker).
//
// The order is the candidates' addresses sorted as strings, so it does not
// depend on the order in which the caller lists them. Each pick takes the
// first address after the previously picked one (wrapping around), which
// stays fair when endpoints join or leave between requests. Fallbacks are
// the next addresses in the same order. Safe for concurrent use: picks are
// serialized by a mutex held for one pass over the candidates.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: round-robin-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: round-robin-picker
package roundrobin
