// Package quota limits what callers may spend on the model servers, in
// requests and in tokens (input, output, total), per API key or tenant
// (optionally per model), over sliding windows from a second to 31 days.
//
// # Reserve at admission, reconcile at completion
//
// Charging tokens only when a response completes lets a burst of long
// generations overrun any budget: every one of them was admitted while the
// counters still looked empty. So at admission the Limiter reserves the
// request's estimated cost: the prompt's tokens (openai.CountTokens of the
// parsed prompt), plus max_tokens (or max_completion_tokens), or the
// policy's defaultOutputTokens when the request has none. A request that
// does not fit in every window of every policy that applies is refused
// with 429, Retry-After and OpenAI's x-ratelimit-* headers; one that fits
// gets the same headers on its response. When the response is over the
// reservation is replaced by the real usage (the server's `usage`, or the
// output tokens counted on the way when it sent none); a request that
// failed before any output gives its output reservation back and keeps its
// input charged.
//
// So the windows hold reservations, not guesses made after the fact: in
// any window the admitted reservations never sum past the limit. Usage can
// pass its reservation only where the estimate is low: the model server's
// tokenizer counts the prompt differently (a chat template adds a few
// tokens), or a response without max_tokens outgrows the default. For the
// second, streams are metered as they flow (StreamBody): under the Cut
// policy the reservation is topped up in steps of defaultOutputTokens while
// the budget allows, and the stream is ended at the first event that does
// not fit; under Finish it completes and is charged in full.
//
// # Sliding windows and their error
//
// A window of length L is counted in N sub-buckets (N = 60 up to a day, 96
// from a day on) of width W = L/N, kept with a running total: admitting is
// O(1), moving time on costs one step per sub-bucket passed. Usage is
// charged to the sub-bucket of the moment it was admitted and counted until
// that sub-bucket leaves the window, that is for between L and L+W. The
// error is one-sided: a window never forgets usage early, so no interval of
// length L ever admits more than the limit; it gives capacity back at most
// W late (1 s for a minute, 1 min for an hour, 15 min for a day). A
// correction at settlement goes to the sub-bucket of the admission, so a
// long stream's output counts from when it was admitted.
//
// # Stores
//
// MemoryStore keeps counters in this process, in 64 lock-striped shards;
// an admission locks its counters' shards in order and checks and charges
// all of them atomically. It allocates nothing once a counter exists, and
// drops counters whose windows have emptied once a minute.
//
// RedisStore keeps them in Redis, shared by every replica: one hash per
// counter, and Lua scripts (scripts.go) doing the same arithmetic, so an
// admission of all of a request's counters is one EVALSHA, one round trip,
// atomic (EVAL after a NOSCRIPT). Settlements are queued and pipelined by a
// background sender: no round trip on the request's path. Keys are
// "<prefix><limit name>:<len>:<key>:<len>:<tenant>:<len>:<model>" and
// expire one window after their last change. Timestamps are the replicas'
// clocks, which must be synchronised (NTP); skew only shifts sub-bucket
// boundaries. A Redis Cluster must keep one request's counters in one slot;
// use a single primary (with replicas or Sentinel) instead.
//
// Failover wraps a RedisStore with a failure mode for when Redis does not
// answer within the timeout: FailOpen admits against per-replica in-memory
// counters (limits then hold per replica), FailClosed refuses with 503. The
// first failure starts a probe that PINGs Redis with exponential backoff
// (100 ms doubling to 5 s); the first PING answered switches back. What
// was counted locally during an outage is not carried into Redis.
//
// # Configuration
//
// The QuotaPolicy and QuotaStore kinds (kind.go) configure quotas. API
// keys and JWT grants name the policies they are charged to; package auth,
// below this one, resolves those names to the QuotaPolicy objects that
// Identity.Quotas carries here, where PoliciesFromConfig turned each into
// a Policy.
//
// # Metrics
//
// igw_quota_rejections_total{limit,metric,window},
// igw_quota_store_errors_total{op}, igw_quota_fallback_active,
// igw_quota_unavailable_total, igw_quota_stream_cuts_total,
// igw_quota_reservations_total and igw_quota_tokens_total{kind,type}
// (reserved against actual input and output tokens).
package quota
