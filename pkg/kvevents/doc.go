// Package kvevents tracks exactly what every model server holds in its
// prefix cache, from the KV-cache events vLLM and SGLang publish
// (REFERENCE.md §10), so that prefix-aware routing can rest on facts instead
// of igw's memory of where it sent what (the approximate prefix scorer):
// events survive replica evictions and restarts, and every igw replica that
// subscribes sees the same view without coordinating.
//
// # Wire format
//
// ZeroMQ PUB/SUB; a message is [topic, sequence (8-byte big-endian uint64),
// payload]; the payload is msgpack EventBatch = [timestamp, events,
// data_parallel_rank?], events arrays tagged "BlockStored",
// "BlockRemoved", "AllBlocksCleared". Decoder reads them by position,
// tolerating missing trailing fields (older engines, msgspec's
// omit_defaults) and extra ones (newer engines), skipping unknown event
// tags; block hashes may be uint64, int64 or bytes (last 8 bytes,
// big-endian). SGLang's publisher is the same module and is accepted as
// is: its five-field BlockStored (no medium, lora_name or group fields),
// one event per radix-tree page (page size 1 by default), negative
// Python-int hashes and attn_dp_rank in the batch's third field
// (TestSubscriber_AcceptsSGLangEvents). Every length is checked against
// Limits and against the bytes left, so a malformed payload fails without
// allocating what it claims; FuzzDecoder pins that.
//
// # Subscriber
//
// One SUB socket per endpoint, dialled at Options.Address (DefaultAddress:
// the label igw.dev/kv-events-endpoint, else the endpoint's host and the
// label igw.dev/kv-events-port, else vLLM's default port 5557), filtering
// on the topic prefix "kv@". Each endpoint's messages are applied in order
// by its own goroutine. The sequence number decides what the index trusts:
//
//   - the next number: applied;
//   - a jump forward (lost messages), an undecodable payload, or a lost
//     connection: the endpoint's entries become uncertain (Index.MarkGap)
//     and are not matched until the engine stores them again; the endpoint
//     has resynchronised when no uncertain entry is left, at once on
//     AllBlocksCleared;
//   - a number going back: the publisher restarted, so its engine's cache
//     is empty; the endpoint's entries are dropped (Index.Clear).
//
// SetEndpoints is level-based like the metrics scraper's: an endpoint that
// leaves the set has its subscription closed and then its entries removed
// (Index.Forget), so no stale entry outlives it.
//
// Limits of the transport. A subscription joins asynchronously (ZeroMQ's
// slow joiner) and there is no replay: blocks stored before it delivers are
// unknown to the index, which costs hits, never gives false ones. The
// pure-Go ZeroMQ library (github.com/go-zeromq/zmq4) allocates each frame
// at the size its peer declares before the payload limit here applies, so
// publishers must be trusted model servers on the cluster network (restrict
// the port with a NetworkPolicy).
//
// # Index
//
// Per endpoint, the set of blocks its engine holds. A block is keyed by
// igw's own chained hash of its token ids (ChainHash, from the TokenIDs
// each BlockStored carries, chained from its parent's key found by the
// parent's engine hash), the LoRA adapter (lora_name, else lora_id;
// adapters never share blocks) and the KV-cache group (group_idx). A map
// from the engine's hashes to those keys lets BlockRemoved and later
// parents find them. So matching needs the prompt's token ids as the
// engine tokenizes them (package tokenizer) cut into blocks of the
// engine's block size and hashed with PromptHashes, and never the
// engine's hash function or seed. A block whose parent the index never
// saw (stored before the subscription joined) cannot be chained and is
// not tracked: a miss, never a false hit. Events without token ids are
// keyed by the engine's hash (matched only by a caller that has those).
//
// Match counts the leading blocks of a prompt an endpoint holds for
// certain; for hybrid models every group must hold what a hit needs —
// full-attention groups every block of the prefix, sliding-window groups
// (kv_cache_spec_kind or sliding_window) the window of blocks ending at it
// — so sliding-window caches give no false hits.
//
// Memory is bounded: each endpoint tracks at most the index's capacity of
// blocks (DefaultCapacity, 131,072: five times an H100's 26,000 blocks for
// an 8B model); past it the oldest stored block is dropped. A tracked block
// costs about 148 bytes (a 40-byte entry plus its slots in the two maps,
// by igw key and by engine hash): BenchmarkIndex_StoreMillionBlocks
// measures 141.2 MiB per million blocks, so a full default cap is about
// 18.5 MiB per endpoint, and an engine with 26,000 blocks about 3.7 MiB.
//
// # Where it runs
//
// The engine (package engine) builds one Index and one Subscriber, feeds
// the Subscriber every endpoint set, and keeps it active while the
// scheduler has a precise-prefix-cache-scorer, which reads the Index with
// the prompt hashes its tokenizer gives (package preciseprefix).
package kvevents
