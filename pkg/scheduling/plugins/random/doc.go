// Package random is the random-picker plugin: it picks uniformly at random
// among the filtered candidates, ignoring scores. It is the baseline for
// benchmarks and the right picker for a profile that only filters.
//
// Type name: random-picker (a Picker).
//
// Fallbacks are further distinct candidates, also chosen at random.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: random-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: random-picker
package random
