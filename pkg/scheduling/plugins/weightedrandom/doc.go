// Package weightedrandom is the weighted-random-picker plugin: it picks a
// candidate with probability proportional to its weighted total score.
// Unlike max-score-picker it spreads load across all good endpoints instead
// of herding every request onto the single best one between two scrapes.
//
// Type name: weighted-random-picker (a Picker).
//
// When every score is 0 the choice is uniform. Fallbacks are drawn the same
// way without replacement.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: weighted-random-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: weighted-random-picker
package weightedrandom
