// Package maxscore is the max-score-picker plugin, the default picker: it
// sends the request to the candidate with the highest weighted total score
// and breaks ties at random, so that equally good endpoints share the load
// instead of the first one in the list taking everything.
//
// Type name: max-score-picker (a Picker). A profile without a picker gets
// one of these.
//
// Fallbacks are the next best candidates by score, in descending order
// (ties again broken at random), up to the scheduler's fallback count.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: max-score-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: max-score-picker
package maxscore
