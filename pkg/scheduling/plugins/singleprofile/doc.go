// Package singleprofile is the single-profile-handler plugin, the default
// profile handler: it runs the one configured scheduling profile and makes
// its choice the request's destination. Deployments that do not
// disaggregate prefill and decode need nothing else.
//
// Type name: single-profile-handler (a ProfileHandler). It is added
// automatically when a configuration names no profile handler.
//
// The configuration must have exactly one scheduling profile; any other
// count is an error when the scheduler is built.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: single-profile-handler
//	- type: queue-scorer
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: queue-scorer
package singleprofile
