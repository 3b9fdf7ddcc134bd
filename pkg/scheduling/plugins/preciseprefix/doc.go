// Package preciseprefix is the precise-prefix-cache-scorer plugin: it sends
// a request to the endpoint that actually holds the longest prefix of its
// prompt in its KV cache, as the model servers themselves report it in
// their KV-cache events (package kvevents), instead of guessing from where
// igw sent earlier prompts as the approximate prefix-cache-scorer does. The
// guess goes wrong when a replica evicts under memory pressure, restarts,
// or when several igw replicas route the same prefixes; the events do not.
//
// Type name: precise-prefix-cache-scorer (a Scorer, a PreRequest hook and
// an EndpointForgetter).
//
// How it works. The prompt is tokenized as the engine tokenizes it, with
// the model's own tokenizer.json and chat template (package tokenizer,
// parameters tokenizer and modelTokenizers): a chat completion's messages
// rendered by the template, a completion's prompt with the tokenizer's
// special tokens. Its tokens are cut into blocks of blockSize (the
// engines' block size) and each block hashed with igw's chained hash of
// token ids (kvevents.PromptHashes). The index keys the blocks the engines
// report by the same hash, computed from the token ids in their events, so
// the engine's own hash function and seed never matter.
//
// Score = (leading blocks of the prompt the endpoint holds for certain) /
// (blocks of the prompt, at most maxBlocksToMatch). Entries the index
// holds as uncertain (after a gap in an endpoint's event sequence) do not
// count, and sliding-window KV-cache groups never yield false hits (see
// kvevents.Index.Match). Load awareness is the prefix-cache-scorer's: an
// endpoint whose estimated queue is more than maxQueueImbalance above the
// shortest scores 0, and a prefix whose holders are all over that bound
// spills to one endpoint chosen by rendezvous hashing on the prefix.
//
// Speculative entries (speculativeTTL). Events of a prefill arrive after
// it; a burst of requests sharing a new prefix would scatter before the
// first one's events land. With a TTL set, PreRequest records the
// request's blocks as held by its endpoint for that long; events confirm
// them (the index then holds them) or they expire. Bounded by
// maxSpeculativeBlocks, oldest dropped first.
//
// Fallback. A request that cannot be tokenized precisely — no tokenizer
// configured for its model, an API the template does not render
// (embeddings, responses, Anthropic messages), a prompt sent as token ids
// — is scored by an embedded prefix-cache-scorer with its defaults
// (approximate matching on prompt bytes); so is every request of a scorer
// with no tokenizer at all, which the engine logs at start.
//
// Tokenization cost is bounded by maxPromptBytes (a longer prompt is cut on
// a word boundary and its last block not trusted) and measured by
// tokenizer.BenchmarkEncode: a 4 KiB system prompt costs tens of
// milliseconds cold with the pure-Go tokenizer, about a millisecond once
// its tokens are cached (the tokenizer caches each piece of text between
// special tokens, so a shared system prompt is tokenized once).
//
// Dependencies. The scorer is built from configuration like every plugin;
// the composition root attaches the kvevents.Index (AttachIndex) that a
// kvevents.Subscriber fills from every endpoint of the pool. Tests may
// Attach another PromptHasher.
//
// Parameters:
//
//	tokenizer             string  none     a directory in the Hugging
//	                                       Face layout (tokenizer.json,
//	                                       tokenizer_config.json) for
//	                                       every model of the pool
//	modelTokenizers       map     none     model name → directory, for
//	                                       pools serving several models
//	blockSize             int     16       the engines' block size (vLLM
//	                                       --block-size, SGLang
//	                                       --page-size)
//	maxBlocksToMatch      int     512      prompt blocks looked up (with
//	                                       SGLang's default page size 1,
//	                                       a block is a token: raise it)
//	maxPromptBytes        int     32768    prompt text tokenized
//	speculativeTTL        string  off      e.g. 2s
//	maxSpeculativeBlocks  int     65536    speculative entries held
//	maxQueueImbalance     int     4        as the prefix-cache-scorer's;
//	                                       negative disables
//
// Example:
//
//	apiVersion: inference.networking.x-k8s.io/v1alpha1
//	kind: EndpointPickerConfig
//	plugins:
//	- type: precise-prefix-cache-scorer
//	  parameters:
//	    tokenizer: /models/Qwen2.5-7B-Instruct
//	    blockSize: 16
//	    speculativeTTL: 2s
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
