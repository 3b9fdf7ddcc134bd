// Package kvcache is the kv-cache-utilization-scorer plugin: it prefers
// endpoints with free KV-cache memory, because a server whose KV cache is
// nearly full must preempt or queue new sequences, which hurts latency for
// everyone on it.
//
// Type name: kv-cache-utilization-scorer (a Scorer).
//
// Score: 1 − utilization, with utilization the scraped KV-cache usage
// fraction (vllm:kv_cache_usage_perc, sglang:token_usage, ...) clamped to
// 0..1. An endpoint that has not been scraped yet reports 0 and scores 1.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: kv-cache-utilization-scorer
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: kv-cache-utilization-scorer
//	    weight: 2
package kvcache
