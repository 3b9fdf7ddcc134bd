// Package modelserver keeps the datastore's view of every model server
// current: it scrapes each endpoint's Prometheus /metrics page about every
// 50 ms and checks its /health route about every second, and publishes what
// it learns on the *datastore.Endpoint (SetMetrics, SetReady).
//
// # What is scraped, and why
//
// The scheduler routes a request to the replica that will serve it fastest,
// and admission control decides whether the pool is saturated. Both need, per
// endpoint, a recent answer to a few questions, read from the metric names
// each engine exports (REFERENCE §4):
//
//   - how many requests wait in its queue (queue scorer, saturation);
//   - how many run in its batch;
//   - what fraction of its KV cache is in use (KV scorer, saturation);
//   - which LoRA adapters are active or waiting and how many slots it has
//     (LoRA affinity; vLLM only);
//   - its KV-cache geometry, block size and block count, when reported.
//
// Each engine's names live in one small mapping table (mapping.go): one
// concept, one place. Adding an engine is adding a table entry, not a parser.
//
// Aggregation: a server may report one series per served model name (label
// model_name), per data-parallel engine, and so on. Counts (waiting,
// running) are summed across the matching series of a family, since every
// one of those requests competes for the same server. Fractions and sizes
// (KV usage, block geometry) take the largest series: the most loaded cache
// is the one that limits the server, and a maximum never invents a value
// above 1. LoRA information takes the series with the largest value, which
// vLLM sets to the time it was written, so lingering old series are ignored.
//
// A required metric (queue, running, KV usage) that is missing makes the
// scrape fail: the endpoint keeps its last snapshot, which goes stale, and
// after a few consecutive failures the endpoint is marked not ready. The
// LoRA and geometry metrics are optional.
//
// # Speed
//
// A vLLM page with its histograms is tens of kilobytes and is scraped 20
// times a second per endpoint. The Parser first keeps only the lines of the
// few families its engine's table names (a byte scan that compares line
// starts with those names and allocates nothing); of info families, where
// only the newest series is read, it keeps just that series' line. Only
// those few lines reach the Prometheus text parser
// (github.com/prometheus/common/expfmt), so histogram buckets and lingering
// LoRA series are never decoded. BenchmarkParseVLLM measures it against
// BenchmarkParseVLLM_FullPage, the whole page through expfmt.
//
// # Readiness and staleness
//
// An endpoint is ready while its /health answers 200 and its scrapes
// succeed: a few consecutive failed scrapes (Options.FailureThreshold), or a
// single refused connection, mark it not ready until a scrape succeeds.
// datastore.Candidates filters an endpoint list down to those that are ready
// and whose snapshot is younger than a maximum age (datastore.DefaultMaxAge,
// 200 ms), so a
// hung server leaves the candidate set within a few scrape intervals even
// before any request to it times out.
//
// # Wiring
//
//	s, err := modelserver.NewScraper(modelserver.Options{Logger: log})
//	go s.Run(ctx)            // until ctx is cancelled
//	s.SetEndpoints(eps)      // whenever discovery changes the set
//	...
//	cands = datastore.Candidates(cands[:0], eps, time.Now(), datastore.DefaultMaxAge)
package modelserver
