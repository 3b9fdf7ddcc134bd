// Package latency is the latency-scorer plugin: it predicts, for every
// candidate, the request's time to first token (TTFT) and time per output
// token (TPOT) from a model each endpoint learns online from igw's own
// observations, and prefers the endpoint predicted fastest. It replaces
// adding up heuristic scores (queue, KV use, prefix hits) with one
// estimate in seconds in which each of them has the weight the endpoint's
// measured behaviour gives it.
//
// Type name: latency-scorer (a Scorer, PreRequest and ResponseComplete
// hook, the scheduler's LatencyPredictor, and its CostModel: its learned
// TTFT costs per uncached KiB and per request ahead price the
// prefix-cache-scorer's load bound).
//
// The model. Each endpoint has two recursive-least-squares regressions
// with exponential forgetting, so they follow an endpoint whose speed
// changes (another model loaded, a noisy neighbour):
//
//	TTFT = w0 + w1·uncachedKiB + w2·ahead + w3·batch
//	TPOT = v0 + v1·batch + v2·kvUse
//
// uncachedKiB is the prompt the endpoint must prefill: the prompt's bytes
// minus what the prefix-cache scorer expects it to hold (list the latency
// scorer after the prefix-cache-scorer in the profile; without one the
// whole prompt counts). ahead is how many requests will wait at the
// server before this one (its load beyond its learned concurrency limit),
// batch how many run beside it. Features are taken when the request is
// sent; the TTFT target is the attempt's time to its first streamed byte,
// the TPOT target (end − first byte)/(output tokens − 1). A response that
// is not streamed teaches TTFT as its whole time minus the decode the TPOT
// model predicts for its output. Failed attempts teach nothing.
//
// Mixed pools. Every endpoint learns its own weights, so an H100 next to
// an L4, or vLLM next to SGLang, is predicted from its own history. An
// endpoint that has answered fewer than minObservations requests is
// predicted with the average of the endpoints that have (the pool's
// prior), or, before any has, with fixed starting weights.
//
// Cost. A prediction is two dot products over the weights one atomic
// load gives; learning (a 4×4 update) happens once per response, off the
// decision path. Scoring 100 candidates takes a few microseconds and
// allocates nothing per candidate (BenchmarkScore).
//
// Score: the fastest candidate scores 1, another (best+c)/(TTFT+c) with
// c = 10 ms, so near-equal predictions score near-equal. With a TPOT
// objective (x-slo-tpot-ms), a candidate predicted to decode slower than
// it scores half. TTFT objectives are the Director's business: it sheds a
// sheddable request whose best prediction misses its objective.
//
// Parameters:
//
//	forgettingFactor  weight of the past per observation, in (0.9, 1]
//	                  (default 0.995: about 200 responses of memory)
//	minObservations   responses an endpoint's own model needs before it
//	                  is used (default 8)
//
// Example:
//
//	plugins:
//	- type: prefix-cache-scorer
//	- type: latency-scorer
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: prefix-cache-scorer
//	    weight: 1
//	  - pluginRef: latency-scorer
//	    weight: 3
//
// (A scorer of weight 0 does not run, so the prefix-cache-scorer needs a
// weight for the latency scorer to see the cached prefixes.)
package latency
