package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/bench"
)

type benchOverheadFlags struct {
	gateway, direct, model string
	promptBytes, distinct  int
	maxTokens              int
	concurrency            int
	requests, block        int
	warmup                 int
	duration, timeout      time.Duration
	idle                   time.Duration
	gatewayPID             int
	gatewayMetrics         string
}

func newBenchOverheadCommand() *cobra.Command {
	var f benchOverheadFlags
	cmd := &cobra.Command{
		Use:   "overhead",
		Short: "Measure what a gateway adds: the same requests through it and straight to the model server",
		Long: `overhead sends the same streaming chat requests (prompts of --prompt-bytes,
--distinct of them) to --gateway and to --direct, the model server behind it,
and reports the time to the first response byte (TTFB; for a chat stream the
role chunk) and to the stream's end on both paths, and what the gateway adds
at p50, p90 and p99 (differences of the paths' percentiles).

The paths take turns in phases of --block requests, gateway first; a phase
is a closed loop of --concurrency requests and ends before the next begins,
so outside load on the machine hits both paths alike and neither path's
requests queue behind the other's. The run ends when each path has had
--requests requests or after --duration, whichever comes first.

With --gateway-pid (a process on this machine) it reports the gateway's CPU
time per request, from /proc; with --gateway-metrics (its Prometheus
/metrics, with the Go collector, as igw serve's admin port has) the heap
bytes it allocated per request. Both are read over the whole run, with the
gateway's idle rate (measured for --idle before the run) taken off the
direct phases ("raw") or off the whole run ("net"). Loopback addresses only.`,
		Example: `  igw sim --port 18101 --model m --time-scale 1000 &
  igw serve --config gw.yaml &     # a pool of 127.0.0.1:18101, API on :18080, admin on :19091
  igw bench overhead --gateway http://127.0.0.1:18080 --direct http://127.0.0.1:18101 --model m \
      --prompt-bytes 225280 --concurrency 100 --requests 1000 --duration 20s \
      --gateway-pid $(pgrep -f 'igw serve') --gateway-metrics http://127.0.0.1:19091/metrics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchOverhead(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.gateway, "gateway", "", "base URL of the gateway (required; loopback)")
	fl.StringVar(&f.direct, "direct", "", "base URL of the model server behind it (required; loopback)")
	fl.StringVar(&f.model, "model", "", "model named in the requests (required)")
	fl.IntVar(&f.promptBytes, "prompt-bytes", 4<<10, "size of each request's prompt")
	fl.IntVar(&f.distinct, "distinct", 97, "number of distinct prompts (they differ at the start, share the rest)")
	fl.IntVar(&f.maxTokens, "max-tokens", 4, "output tokens per request (ignore_eos)")
	fl.IntVar(&f.concurrency, "concurrency", 8, "requests in flight in a phase")
	fl.IntVar(&f.requests, "requests", 1000, "measured requests per path, at most")
	fl.IntVar(&f.block, "block", 200, "requests per phase before the other path's turn")
	fl.IntVar(&f.warmup, "warmup", 0, "unmeasured requests per path first (0: --concurrency)")
	fl.DurationVar(&f.duration, "duration", 20*time.Second, "no measured request starts after this long")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "limit of one request")
	fl.DurationVar(&f.idle, "idle", time.Second, "with --gateway-pid or --gateway-metrics: how long to watch the idle gateway first")
	fl.IntVar(&f.gatewayPID, "gateway-pid", 0, "the gateway's process id, to report its CPU time per request (Linux)")
	fl.StringVar(&f.gatewayMetrics, "gateway-metrics", "", "the gateway's Prometheus /metrics URL, to report bytes it allocated per request (loopback)")
	_ = cmd.MarkFlagRequired("gateway")
	_ = cmd.MarkFlagRequired("direct")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// overheadReport is what igw bench overhead prints, also as JSON for
// scripts. Times are in seconds, CPU in microseconds.
type overheadReport struct {
	PromptBytes int                   `json:"promptBytes"`
	BodyBytes   int                   `json:"bodyBytes"`
	Concurrency int                   `json:"concurrency"`
	Result      *bench.OverheadResult `json:"result"`
	// GatewayCPUPerRequest and GatewayBytesPerRequest are raw (background
	// work in the gateway phases included) and net of the idle rate; 0
	// when unknown.
	GatewayCPUPerRequest      float64 `json:"gatewayCPUMicrosPerRequest,omitempty"`
	GatewayNetCPUPerRequest   float64 `json:"gatewayNetCPUMicrosPerRequest,omitempty"`
	GatewayBytesPerRequest    float64 `json:"gatewayBytesPerRequest,omitempty"`
	GatewayNetBytesPerRequest float64 `json:"gatewayNetBytesPerRequest,omitempty"`
}

func runBenchOverhead(ctx context.Context, stdout io.Writer, f benchOverheadFlags) error {
	for _, u := range []struct{ flag, url string }{{"--gateway", f.gateway}, {"--direct", f.direct}, {"--gateway-metrics", f.gatewayMetrics}} {
		if u.url == "" && u.flag == "--gateway-metrics" {
			continue
		}
		if err := requireLoopback(u.flag, u.url); err != nil {
			return err
		}
	}
	if f.promptBytes < 1 || f.distinct < 1 || f.maxTokens < 1 || f.concurrency < 1 || f.requests < 1 || f.block < 1 || f.duration <= 0 {
		return fmt.Errorf("--prompt-bytes, --distinct, --max-tokens, --concurrency, --requests, --block and --duration must be positive")
	}
	bodies := overheadBodies(f.model, f.promptBytes, f.distinct, f.maxTokens)
	warmup := f.warmup
	if warmup <= 0 {
		warmup = f.concurrency
	}
	o := bench.OverheadOptions{
		Gateway: f.gateway, Direct: f.direct, Bodies: bodies, Concurrency: f.concurrency,
		Requests: f.requests, Block: f.block, Duration: f.duration, Warmup: warmup, Timeout: f.timeout, Idle: f.idle,
	}
	if f.gatewayPID > 0 || f.gatewayMetrics != "" {
		scrape := &http.Client{Timeout: 10 * time.Second}
		o.Probe = func(ctx context.Context) (bench.ProcessReading, error) {
			var r bench.ProcessReading
			if f.gatewayPID > 0 {
				if r.CPU, r.HasCPU = processCPU(f.gatewayPID); !r.HasCPU {
					return r, fmt.Errorf("--gateway-pid %d: cannot read /proc/%d/stat", f.gatewayPID, f.gatewayPID)
				}
			}
			if f.gatewayMetrics != "" {
				a, err := bench.ScrapeAllocBytes(ctx, scrape, f.gatewayMetrics)
				if err != nil {
					return r, fmt.Errorf("--gateway-metrics: %w", err)
				}
				r.AllocBytes, r.HasAlloc = a, true
			}
			return r, nil
		}
	}
	res, err := bench.MeasureOverhead(ctx, o)
	if res == nil {
		return err
	}
	rep := overheadReport{PromptBytes: f.promptBytes, BodyBytes: len(bodies[0]), Concurrency: f.concurrency, Result: res}
	if raw, net := res.CPUPerRequest(); res.HasCPU {
		rep.GatewayCPUPerRequest, rep.GatewayNetCPUPerRequest = float64(raw.Nanoseconds())/1e3, float64(net.Nanoseconds())/1e3
	}
	if res.HasAlloc {
		rep.GatewayBytesPerRequest, rep.GatewayNetBytesPerRequest = res.AllocPerRequest()
	}
	writeOverheadReport(stdout, f, &rep)
	if err != nil {
		return err
	}
	if res.Gateway.OK == 0 || res.Direct.OK == 0 {
		return fmt.Errorf("no successful requests on one path (gateway: %s; direct: %s)", res.Gateway.FirstError, res.Direct.FirstError)
	}
	return nil
}

// overheadBodies are the streaming chat requests, as igw bench picker
// builds its prompts: distinct at the start, the same after.
func overheadBodies(model string, promptBytes, distinct, maxTokens int) [][]byte {
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", promptBytes/45+1)[:promptBytes]
	bodies := make([][]byte, distinct)
	for i := range bodies {
		msg := []map[string]string{{"role": "user", "content": strconv.Itoa(i) + " " + prompt}}
		bodies[i], _ = json.Marshal(map[string]any{"model": model, "messages": msg, "max_tokens": maxTokens,
			"stream": true, "ignore_eos": true})
	}
	return bodies
}

func writeOverheadReport(w io.Writer, f benchOverheadFlags, rep *overheadReport) {
	res := rep.Result
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 2, 64) }
	fmt.Fprintf(w, "overhead: gateway %s vs direct %s, %d-byte prompts (%d-byte bodies), %d concurrent\n",
		f.gateway, f.direct, rep.PromptBytes, rep.BodyBytes, rep.Concurrency)
	fmt.Fprintf(w, "  %d phases of up to %d requests, alternating, gateway first, in %s\n", res.Phases, f.block, res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-8s %6s %6s %6s  %28s  %20s\n", "", "sent", "ok", "failed", "TTFB ms p50 / p90 / p99", "end ms p50 / p99")
	for _, p := range []struct {
		name string
		r    bench.OverheadPath
	}{{"gateway", res.Gateway}, {"direct", res.Direct}} {
		fmt.Fprintf(w, "  %-8s %6d %6d %6d  %28s  %20s\n", p.name, p.r.Sent, p.r.OK, p.r.Failed,
			ms(p.r.TTFB.P50)+" / "+ms(p.r.TTFB.P90)+" / "+ms(p.r.TTFB.P99), ms(p.r.E2E.P50)+" / "+ms(p.r.E2E.P99))
	}
	fmt.Fprintf(w, "  added TTFB    p50 %s ms  p90 %s ms  p99 %s ms\n", ms(res.AddedTTFB.P50), ms(res.AddedTTFB.P90), ms(res.AddedTTFB.P99))
	if res.HasCPU {
		fmt.Fprintf(w, "  gateway CPU   %.0f µs per request (net of idle %.0f µs; idle %.1f ms/s)\n",
			rep.GatewayCPUPerRequest, rep.GatewayNetCPUPerRequest, float64(res.IdleCPUPerSecond.Microseconds())/1e3)
	}
	if res.HasAlloc {
		fmt.Fprintf(w, "  gateway alloc %s per request (net of idle %s, %.2f× the body; idle %s/s)\n",
			kb(rep.GatewayBytesPerRequest), kb(rep.GatewayNetBytesPerRequest), rep.GatewayNetBytesPerRequest/float64(rep.BodyBytes), kb(res.IdleAllocBytesPerSecond))
	}
	for _, p := range []struct {
		name string
		r    bench.OverheadPath
	}{{"gateway", res.Gateway}, {"direct", res.Direct}} {
		if p.r.FirstError != "" {
			fmt.Fprintf(w, "  first error   %s: %s\n", p.name, p.r.FirstError)
		}
	}
	js, _ := json.Marshal(rep)
	fmt.Fprintf(w, "  json          %s\n", js)
}

// requireLoopback refuses a URL whose host is not a loopback address: a
// load generator that measures overhead is meant for processes on this
// machine, and a typo must not aim it at a shared service.
func requireLoopback(flag, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, raw, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%s %q: want an http:// URL", flag, raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("%s %q: only loopback addresses (127.0.0.1, [::1], localhost)", flag, raw)
	}
	return nil
}
