// Package preciseprefix is the precise-prefix-cache-scorer plugin: it sends
// a request to the endpoint that actually holds the longest prefix of its
// prompt in its KV cache, as the model servers themselves report it in
// their KV-cache events (package kvevents), instead of guessing from where
// igw sent earlier prompts as the approximate prefix-cache-scorer does. The
// guess goes wrong when a replica evicts under memory pressure, restarts,
// or when several igw replicas route the same prefixes; the events do not.
//
// Type name: precise-prefix-cache-scorer (a Scorer).
//
// Score = (leading blocks of the prompt the endpoint holds for certain) /
// (blocks of the prompt, at most maxBlocksToMatch). Blocks are the
// engine's: the prompt's token ids as the engine tokenizes it, cut into
// blocks of the engine's block size, each hashed by the engine's chained
// hash. Entries the index holds as uncertain (after a gap in an endpoint's
// event sequence) do not count, and sliding-window KV-cache groups never
// yield false hits (see kvevents.Index.Match).
//
// Dependencies. The scorer is built from configuration like every plugin,
// and then needs two things attached by the composition root (Attach):
//
//   - an Index, the kvevents.Index a kvevents.Subscriber fills from every
//     endpoint of the pool;
//   - a PromptHasher that turns a request into the engine's block hashes
//     (and its LoRA key, kvevents.LoRAKey). This needs the model's own
//     tokenizer and chat template: issue 15 part 3, not built yet.
//
// Until both are attached every candidate scores 0: the scorer gives no
// signal rather than a wrong one, and the profile's other scorers decide.
// The engine (package engine) attaches its index and, while a scheduler has
// this plugin, subscribes to every endpoint's KV-cache events; with no
// tokenizer yet it logs at start that the scorer scores 0. So today the
// plugin can be configured, its index is live, but it does not steer
// requests until part 3 supplies the PromptHasher.
//
// Parameters:
//
//	maxBlocksToMatch  int  default 512  prompt blocks looked up, from the
//	                                    first (bounds the work per
//	                                    endpoint: one map lookup per block)
//
// Example:
//
//	apiVersion: inference.networking.x-k8s.io/v1alpha1
//	kind: EndpointPickerConfig
//	plugins:
//	- type: precise-prefix-cache-scorer
//	  parameters:
//	    maxBlocksToMatch: 256
//	- type: queue-scorer
//	- type: max-score-picker
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: precise-prefix-cache-scorer
//	    weight: 3
//	  - pluginRef: queue-scorer
//	    weight: 2
//	  - pluginRef: max-score-picker
package preciseprefix
