// Package prefix is the prefix-cache-scorer plugin (approximate prefix
// cache): it sends a request to the endpoint most likely to still hold its
// prompt's prefix in its KV cache, because a prefix-cache hit skips
// recomputing those tokens and cuts time to first token dramatically on
// chat and agent workloads that resend a long shared context.
//
// Type name: prefix-cache-scorer (a Scorer, a PreRequest hook and an
// EndpointForgetter).
//
// How it works. The prompt (Request.Prompt) is cut into blocks of
// blockSize bytes; only full blocks count, at most maxPrefixBlocksToMatch
// of them from the start. Block i is hashed with xxhash64 seeded with block
// i−1's hash, and the chain is seeded with the hash of the target model
// name, so one hash stands for the whole prefix up to that block and two
// models never share entries. The hashes are computed once per request and
// kept in the request's CycleState.
//
// The scorer does not ask the model servers what they cache; it remembers
// what it sent where. When a request is routed (the PreRequest hook, with
// the endpoint actually used), the request's block hashes are recorded for
// that endpoint, as most recent in a per-endpoint LRU of
// lruCapacityPerServer blocks — the default 31,250 blocks of 64 bytes is
// about 2 MB of prompt text, roughly what a GPU's KV cache holds. The
// prompt's first block is recorded as the most recent so an endpoint
// forgets a prompt's tail before its shared head.
//
// Score = (number of consecutive blocks, from the first, the endpoint
// holds) / (number of blocks of the prompt). A prompt shorter than one
// block scores 0 everywhere (no signal).
//
// Load awareness. An endpoint whose estimated waiting queue (scraped
// waiting requests plus igw's in-flight requests the scrape has not seen)
// exceeds the shortest candidate queue by more than maxQueueImbalance
// scores 0: a cached prefix saves one prefill, but a queue delays every
// request behind it, and without this check a hot shared prefix sends all
// of its traffic to one endpoint while the others idle (the queue scorer's
// min–max normalization caps its counterweight). Below the imbalance the
// prefix score is untouched, so affinity holds until an endpoint really
// queues. When every holder of the prefix is over the bound and no endpoint
// within it holds any of it, the prefix spills to one endpoint chosen by
// rendezvous hashing on the prefix among those within the bound (it gets
// the holders' score), so a hot group grows onto a stable second replica
// whose cache warms, and different groups spill to different replicas.
//
// Cost-aware bound. With a latency-scorer in the configuration (it is the
// scheduler's scheduling.CostModel), the bound for an endpoint that holds
// part of the prompt is priced instead of fixed: it keeps its prefix score
// while its extra queue × its learned TTFT cost per request ahead stays
// below its cached KiB × its learned TTFT cost per KiB of prefill — the
// wait the imbalance adds against the prefill the hit saves. A long shared
// prompt on a slow-prefilling server so keeps its affinity through a
// deeper queue than a short prompt on a fast one. Until the endpoint's
// costs are learned, and for spill targets, the fixed maxQueueImbalance
// applies.
//
// Memory: one shared index for all endpoints (see index.go): 24 bytes per
// tracked (block, endpoint) pair plus 16–32 bytes per distinct block hash,
// at most 56 bytes per tracked block (a test asserts <= 64). Scoring finds
// every candidate's run with a binary search over block positions, walking
// the list of endpoints that hold a block a logarithmic number of times, so
// a prompt cached on every endpoint costs a few microseconds, not one
// lookup per block per endpoint; it takes a read lock. Recording takes a
// write lock for a few microseconds per request. Call
// Scheduler.ForgetEndpoint when an endpoint leaves the pool so its blocks
// are dropped.
//
// Parameters:
//
//	blockSize               int  default 64     bytes of prompt per block
//	                                            (hashBlockSize is accepted
//	                                            as an alias)
//	maxPrefixBlocksToMatch  int  default 256    blocks hashed and matched
//	                                            from the prompt's start
//	lruCapacityPerServer    int  default 31250  blocks remembered per
//	                                            endpoint
//	maxQueueImbalance       int  default 4      waiting requests above the
//	                                            shortest queue beyond which
//	                                            an endpoint loses its prefix
//	                                            score (the fallback of the
//	                                            cost-aware bound); negative
//	                                            disables
//
// Example:
//
//	plugins:
//	- type: prefix-cache-scorer
//	  parameters: {blockSize: 64, maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250}
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: prefix-cache-scorer
//	    weight: 3
package prefix
