// Package labelselector is the label-selector-filter plugin: it keeps only
// the endpoints whose labels match a selector, e.g. to confine a profile to
// one hardware class or to the decode role of a disaggregated pool.
//
// Type name: label-selector-filter (a Filter).
//
// An endpoint is kept when every key of matchLabels is among its labels
// (datastore.Endpoint.Labels) with exactly the given value — the semantics
// of a Kubernetes matchLabels selector. When no endpoint matches, the
// scheduling cycle fails with reason "filtered-out".
//
// Parameters:
//
//	matchLabels  map[string]string  required, non-empty  the labels an
//	                                endpoint must carry.
//
// Example:
//
//	plugins:
//	- type: label-selector-filter
//	  name: h100-only
//	  parameters:
//	    matchLabels: {gpu: h100}
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: h100-only
package labelselector
