// Package lora is the lora-affinity-scorer plugin: it sends requests for a
// LoRA adapter to servers that already have the adapter loaded, because
// loading an adapter costs time and occupies one of the server's limited
// adapter slots (vLLM's max_loras).
//
// Type name: lora-affinity-scorer (a Scorer).
//
// Score, for a request whose Request.LoRAAdapter is set, from the
// server's scraped vllm:lora_requests_info:
//
//	1.0  the adapter is active (has running requests) on the server
//	0.8  the server has a free adapter slot: active+waiting < max_lora
//	0.6  the adapter is waiting (queued for a slot) on the server
//	0    otherwise (loading it would have to wait for a slot)
//
// The first matching rule wins. A server that reports no LoRA information
// (max_lora 0) only scores by the active/waiting rules. Requests without an
// adapter (base-model requests) score 1 everywhere, so the scorer never
// steers base-model traffic; it is neutral for them.
//
// Parameters: none (any parameter is an error).
//
// Example:
//
//	plugins:
//	- type: lora-affinity-scorer
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: lora-affinity-scorer
//	    weight: 1
package lora
