// Package running is the running-requests-size-scorer plugin: it prefers
// endpoints with fewer sequences in their running batch, because every
// extra sequence in a batch slows down each decoding step (inter-token
// latency) for all of them.
//
// Type name: running-requests-size-scorer (a Scorer).
//
// Score: with r the scraped running-request count of each candidate
// (vllm:num_requests_running and its equivalents), (max−r)/(max−min) over
// the candidates of the cycle — the same normalization as queue-scorer;
// all 1 when equal.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: running-requests-size-scorer
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: running-requests-size-scorer
//	    weight: 1
package running
