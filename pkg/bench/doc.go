// Package bench is igw's load generator: it sends a reproducible workload
// to an OpenAI-compatible target (igw, another gateway, or a model server),
// measures every streamed request, and condenses the measurements into
// per-stage summaries that a comparison report can put side by side.
//
// # Pieces
//
//   - A Workload (bench/workloads/*.yaml, LoadWorkload) says what to send
//     and how hard. Its NewSource yields Requests; its Options the load.
//   - A Client sends one Request as a streaming chat (or text) completion
//     with stream_options.include_usage, max_tokens and ignore_eos, and
//     measures it (Client.Send → RequestResult).
//   - Run drives a Source through a Client along a ladder of Stages and
//     returns a RunResult: every RequestResult plus a Summary per stage and
//     in total. Everything is JSON-serializable.
//
// A comparison runner calls, per contender:
//
//	w, err := bench.LoadWorkload("bench/workloads/shared-prefix.yaml")
//	src, err := w.NewSource()              // same seed ⇒ same requests
//	c, err := bench.NewClient(targetURL, bench.ClientOptions{})
//	res, err := bench.Run(ctx, c, src, w.Options())
//
// # Comparison
//
// Compare (igw bench compare) runs one workload through several routers
// ("contenders") and reports them side by side. For each contender it
// starts a fresh simulated fleet as a child process (`igw sim` with the
// workload's fleet section, on free loopback ports, so every contender
// meets cold KV caches), starts the contender (`igw serve` with a
// generated standalone configuration for the built-ins igw-default,
// round-robin, least-request and random; a shell command or a URL for
// external ones), sends the workload with the same seed, reads every
// replica's /metrics (prefix-cache hits and queries, finished requests,
// tokens) and stops everything, process groups included. It drives the
// igw binary rather than the simulator and gateway packages so that it
// measures real processes over real sockets, as it would any other
// gateway. WriteReport turns the results into results.json, report.md,
// gonum/plot charts (TTFT p50 and p90 and output throughput against the
// offered load, per-replica request share; SVG and PNG) and index.html.
// The key figures are taken at the decisive stage (DecisiveStage): the
// highest load the baseline (round-robin) served without an error.
//
// # Gateway overhead
//
// MeasureOverhead (igw bench overhead) sends the same streaming chat
// requests to a gateway and straight to the model server behind it, in
// alternating closed-loop phases, and reports the added time to the first
// response byte at p50/p90/p99; with a probe of the gateway process (CPU
// from /proc, heap allocation from its /metrics via ScrapeAllocBytes) also
// its CPU and bytes per request, with its idle rate measured and left out.
//
// # Measurements
//
// Per request: TTFT is the time from sending to the first SSE event that
// carries generated text (vLLM's role-only first chunk does not count);
// ITL are the gaps between successive content-bearing events; TPOT is
// (E2E − TTFT)/(output tokens − 1); NTPOT is E2E/output tokens; token
// counts (input, output, cached) come from the usage chunk; the endpoint
// is the x-gateway-destination-endpoint-served response header (or
// trailer) when the target sends it. Failures are classified (ErrorKind):
// HTTP status, transport (refused, reset, eof, dns, timeout, other), broken
// stream, per-request timeout; requests cut off by cancellation or the
// drain deadline are counted apart (ErrCanceled), as are arrivals the
// client dropped because MaxInFlight requests were already open.
//
// # Load
//
// A Stage is either open-loop Poisson arrivals at a QPS (exponential gaps,
// seeded, so every contender gets the same arrival times) or a closed loop
// of N workers. Stages run back to back without draining; a request
// belongs to the stage in which it was sent. A warm-up at the first
// stage's load runs before the stages and is left out of every summary.
// MaxDuration and MaxRequests bound the run; cancelling the context stops
// sending and cancels in-flight requests at once.
//
// # Summaries
//
// Percentiles are exact, from all samples sorted, by the nearest-rank
// method (p-th percentile = sorted[ceil(p/100·n) − 1]); no interpolation,
// so every figure is a latency a request really had. Latencies of a stage
// are over its successful requests; ITL pools all gaps of all requests.
// Throughputs (req/s, output and input tokens/s) count the successful
// requests that completed inside the stage's window, whichever stage sent
// them: a saturated target shows the rate it served, not the rate asked
// of it. The cache hit ratio is Σ cached_tokens / Σ prompt_tokens.
//
// # Workloads
//
// Prompt text is drawn, with the workload's seed, from a fixed vocabulary
// of one-token words (one to five letters) separated by single spaces, so
// a text of n words is exactly n tokens under pkg/openai's tokenizer (the
// simulator's), and a system prompt followed by a newline and a question
// is an exact token prefix of the prompt. Lengths are of message content,
// in tokens; the chat template adds a few. Exactly one generator section:
//
//	shared_prefix:          # inference-perf's names
//	  num_groups: 16        # groups, each with its own system prompt
//	  num_prompts_per_group: 8
//	  system_prompt_len: 2000
//	  question_len: 100
//	  output_len: 100       # every request asks for exactly this
//	sharegpt:               # log-normal lengths; these are the defaults
//	  input_mean: 200       # input_sigma 1.0, input_min 4, input_max 2048
//	  output_mean: 180      # output_sigma 0.9, output_min 1, output_max 1024
//	multi_turn:             # growing conversations with the server's answers
//	  num_sessions: 64      # open at once, interleaved
//	  turns: 5
//	  system_prompt_len: 500
//	  user_len: 60
//	  output_len: 80
//
// Modifiers combine with any generator: lora_mix (the request's model),
// priority_mix (x-gateway-inference-objective) and fairness_mix
// (x-gateway-inference-fairness-id), each a list of {name, weight}; an
// empty name means the base model or no header. The rest of a file:
//
//	name: shared-prefix     # defaults to the file name
//	model: meta-llama/Llama-3.1-8B-Instruct
//	api: chat               # or completions (not with multi_turn)
//	seed: 42
//	warmup: 5s
//	max_duration: 0s        # 0: the sum of the stages
//	max_requests: 0         # 0: no limit
//	request_timeout: 120s
//	stages:
//	  - {qps: 16, duration: 15s}
//	  - {concurrency: 32, duration: 15s}
//	fleet:                  # passed through to the comparison tool
//	  replicas: 8           # keys are igw sim's (docs/sim.md)
//	  max-num-seqs: 8
//
// Unknown keys are errors, and validation errors name the field
// ("shared_prefix.num_groups: must be ≥ 1, got 0").
package bench
