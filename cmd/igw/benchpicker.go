package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/igw-dev/igw/pkg/bench"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

type benchPickerFlags struct {
	target, model, mode string
	tls                 bool
	promptBytes         int
	distinct            int
	chunkBytes          int
	concurrency         int
	rate                float64
	duration, warmup    time.Duration
	pickerPID           int
	pickerMetrics       string
	idle                time.Duration
}

func newBenchPickerCommand() *cobra.Command {
	var f benchPickerFlags
	cmd := &cobra.Command{
		Use:   "picker",
		Short: "Measure an Endpoint Picker's decisions per second and round-trip latency over ext_proc",
		Long: `picker plays Envoy's side of the ext_proc protocol against an Endpoint
Picker (igw epp or any conforming picker) and measures the request phase a
gateway waits for before it can route: request headers and the body in
FULL_DUPLEX_STREAMED (or BUFFERED) mode, up to the routing decision with the
body echoed back. Chat prompts of --prompt-bytes, --distinct of them, so a
prefix-aware picker does real work.

Without --rate it runs a closed loop of --concurrency streams (throughput:
decisions per second). With --rate it starts that many requests per second
whatever the picker's pace (an open loop: latency from each request's
scheduled start). With --picker-pid (a process on this machine) it also
reports the picker's own CPU time per decision, read from /proc. With
--picker-metrics (the picker's Prometheus /metrics, which must carry the Go
collector, as igw epp's does) it reports the bytes the picker allocated per
decision, read from go_memstats_alloc_bytes_total before and after the run;
the picker's allocation while idle (its own scrapes of the model servers,
the /metrics reads) is measured for --idle first and reported beside it,
with a net figure that leaves it out.`,
		Example: `  igw bench picker --target 127.0.0.1:9002 --tls --model meta-llama/Llama-3.1-8B-Instruct
  igw bench picker --target 127.0.0.1:9002 --rate 1000 --duration 10s --picker-pid $(pgrep -f 'igw epp')
  igw bench picker --target 127.0.0.1:9002 --tls --model m --picker-metrics http://127.0.0.1:9090/metrics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchPicker(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "host:port of the picker's ext_proc gRPC port (required)")
	fl.BoolVar(&f.tls, "tls", false, "connect with TLS (certificate not verified, as for a picker's self-signed one)")
	fl.StringVar(&f.model, "model", "", "model named in the requests (required)")
	fl.StringVar(&f.mode, "body-mode", "FULL_DUPLEX_STREAMED", "FULL_DUPLEX_STREAMED or BUFFERED")
	fl.IntVar(&f.promptBytes, "prompt-bytes", 4<<10, "size of each request's prompt")
	fl.IntVar(&f.distinct, "distinct", 97, "number of distinct prompts (they differ at the start, share the rest)")
	fl.IntVar(&f.chunkBytes, "chunk-bytes", 16<<10, "body message size in FULL_DUPLEX_STREAMED mode")
	fl.IntVar(&f.concurrency, "concurrency", 8, "streams in flight in a closed loop")
	fl.Float64Var(&f.rate, "rate", 0, "requests per second in an open loop (0: closed loop)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long the measured run lasts")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Second, "unmeasured run before it (connections, caches, the picker's first scrapes)")
	fl.IntVar(&f.pickerPID, "picker-pid", 0, "the picker's process id, to report its CPU time per decision (Linux)")
	fl.StringVar(&f.pickerMetrics, "picker-metrics", "", "the picker's Prometheus /metrics URL, to report bytes it allocated per decision")
	fl.DurationVar(&f.idle, "idle", time.Second, "with --picker-metrics: how long to measure the picker's allocation with no load, before the run")
	_ = cmd.MarkFlagRequired("target")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// pickerReport is what igw bench picker prints, also as JSON for scripts.
type pickerReport struct {
	Mode          string     `json:"mode"`
	PromptBytes   int        `json:"promptBytes"`
	Decided       int        `json:"decided"`
	Rejected      int        `json:"rejected"`
	Failed        int        `json:"failed"`
	Dropped       int        `json:"dropped"`
	DecisionsPerS float64    `json:"decisionsPerSecond"`
	Latency       bench.Dist `json:"latencySeconds"`
	// PickerCPUPerDecision and LoadCPUPerDecision are in microseconds; 0
	// when unknown.
	PickerCPUPerDecision float64 `json:"pickerCPUMicrosPerDecision,omitempty"`
	LoadCPUPerDecision   float64 `json:"loadCPUMicrosPerDecision,omitempty"`
	// PickerBytesPerDecision is the picker's heap allocation over the run
	// divided by the decisions; PickerIdleBytesPerSecond its allocation
	// rate with no load (background work), and PickerNetBytesPerDecision
	// the first with that rate times the run's length taken off. 0 when
	// unknown.
	PickerBytesPerDecision    float64 `json:"pickerBytesPerDecision,omitempty"`
	PickerIdleBytesPerSecond  float64 `json:"pickerIdleBytesPerSecond,omitempty"`
	PickerNetBytesPerDecision float64 `json:"pickerNetBytesPerDecision,omitempty"`
	FirstError                string  `json:"firstError,omitempty"`
}

func runBenchPicker(ctx context.Context, stdout io.Writer, f benchPickerFlags) error {
	mode := envoytest.FullDuplex
	switch f.mode {
	case "FULL_DUPLEX_STREAMED":
	case "BUFFERED":
		mode = envoytest.Buffered
	default:
		return fmt.Errorf("--body-mode %q: want FULL_DUPLEX_STREAMED or BUFFERED", f.mode)
	}
	if f.promptBytes < 1 || f.distinct < 1 || f.duration <= 0 {
		return fmt.Errorf("--prompt-bytes, --distinct and --duration must be positive")
	}
	creds := insecure.NewCredentials()
	if f.tls {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}) //nolint:gosec // a benchmark of a picker with a self-signed certificate
	}
	// Envoy's HTTP/2 windows are large; so are these.
	conn, err := grpc.NewClient("passthrough:///"+f.target, grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(extproc.StreamWindowBytes), grpc.WithInitialConnWindowSize(extproc.ConnWindowBytes))
	if err != nil {
		return fmt.Errorf("dial %s: %w", f.target, err)
	}
	defer conn.Close()

	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", f.promptBytes/45+1)[:f.promptBytes]
	bodies := make([][]byte, f.distinct)
	for i := range bodies {
		msg := []map[string]string{{"role": "user", "content": strconv.Itoa(i) + " " + prompt}}
		bodies[i], _ = json.Marshal(map[string]any{"model": f.model, "messages": msg, "max_tokens": 64})
	}
	request := func(i int) *envoytest.Request {
		body := bodies[i%len(bodies)]
		return &envoytest.Request{Mode: mode, Body: body, ChunkSize: f.chunkBytes, Headers: map[string]string{
			":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw-bench", ":scheme": "http",
			"content-type": "application/json", "content-length": strconv.Itoa(len(body)),
		}}
	}
	load := envoytest.Load{Conn: conn, Request: request, Rate: f.rate, Concurrency: f.concurrency}
	if f.warmup > 0 {
		load.Duration = f.warmup
		if w := load.Run(ctx); w.Decided == 0 {
			return fmt.Errorf("warm-up: no decisions (%d rejected, %d failed; %v)", w.Rejected, w.Failed, w.FirstError)
		}
	}
	var alloc *allocMeter
	if f.pickerMetrics != "" {
		if alloc, err = newAllocMeter(ctx, f.pickerMetrics, f.idle); err != nil {
			return fmt.Errorf("--picker-metrics: %w", err)
		}
	}
	load.Duration = f.duration
	pickerCPU0, pickerOK := processCPU(f.pickerPID)
	selfCPU0, selfOK := processCPU(os.Getpid())
	res := load.Run(ctx)
	pickerCPU1, _ := processCPU(f.pickerPID)
	selfCPU1, _ := processCPU(os.Getpid())
	var allocated float64
	if alloc != nil {
		if allocated, err = alloc.stop(ctx); err != nil {
			return fmt.Errorf("--picker-metrics: %w", err)
		}
	}

	rep := pickerReport{Mode: "closed loop, " + strconv.Itoa(f.concurrency) + " streams", PromptBytes: f.promptBytes,
		Decided: res.Decided, Rejected: res.Rejected, Failed: res.Failed, Dropped: res.Dropped,
		DecisionsPerS: float64(res.Decided) / res.Elapsed.Seconds()}
	if f.rate > 0 {
		rep.Mode = fmt.Sprintf("open loop, %g req/s", f.rate)
	}
	lat := make([]float64, len(res.Latencies))
	for i, d := range res.Latencies {
		lat[i] = d.Seconds()
	}
	rep.Latency = bench.NewDist(lat)
	if res.Decided > 0 {
		if pickerOK && f.pickerPID > 0 {
			rep.PickerCPUPerDecision = float64((pickerCPU1 - pickerCPU0).Microseconds()) / float64(res.Decided)
		}
		if selfOK {
			rep.LoadCPUPerDecision = float64((selfCPU1 - selfCPU0).Microseconds()) / float64(res.Decided)
		}
		if alloc != nil {
			rep.PickerBytesPerDecision = allocated / float64(res.Decided)
			rep.PickerIdleBytesPerSecond = alloc.idleRate
			rep.PickerNetBytesPerDecision = max(0, allocated-alloc.idleRate*res.Elapsed.Seconds()) / float64(res.Decided)
		}
	}
	if res.FirstError != nil {
		rep.FirstError = res.FirstError.Error()
	}
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 2, 64) + " ms" }
	fmt.Fprintf(stdout, "picker %s, %s, %d-byte prompts\n", f.target, rep.Mode, f.promptBytes)
	fmt.Fprintf(stdout, "  decisions     %d in %s (%.0f/s); rejected %d, failed %d, not sent %d\n",
		res.Decided, res.Elapsed.Round(time.Millisecond), rep.DecisionsPerS, res.Rejected, res.Failed, res.Dropped)
	fmt.Fprintf(stdout, "  latency       p50 %s  p90 %s  p99 %s  max %s\n", ms(rep.Latency.P50), ms(rep.Latency.P90), ms(rep.Latency.P99), ms(rep.Latency.Max))
	if rep.PickerCPUPerDecision > 0 {
		fmt.Fprintf(stdout, "  picker CPU    %.0f µs per decision (%.0f decisions/s per core)\n", rep.PickerCPUPerDecision, 1e6/rep.PickerCPUPerDecision)
	}
	if rep.LoadCPUPerDecision > 0 {
		fmt.Fprintf(stdout, "  load CPU      %.0f µs per decision (this Envoy stand-in)\n", rep.LoadCPUPerDecision)
	}
	if rep.PickerBytesPerDecision > 0 {
		fmt.Fprintf(stdout, "  picker alloc  %s per decision (%s net of %s/s allocated idle)\n",
			kb(rep.PickerBytesPerDecision), kb(rep.PickerNetBytesPerDecision), kb(rep.PickerIdleBytesPerSecond))
	}
	if rep.FirstError != "" {
		fmt.Fprintf(stdout, "  first error   %s\n", rep.FirstError)
	}
	js, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "  json          %s\n", js)
	if res.Decided == 0 {
		return fmt.Errorf("no decisions")
	}
	return nil
}

// processCPU is the CPU time (user + system) process pid has used, from
// /proc/PID/stat; ok is false where that cannot be read.
func processCPU(pid int) (time.Duration, bool) {
	if pid <= 0 {
		return 0, false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// plain. utime and stime are fields 14 and 15, in clock ticks (100 per
	// second on Linux).
	s := string(data)
	if k := strings.LastIndexByte(s, ')'); k >= 0 {
		s = s[k+1:]
	}
	fields := strings.Fields(s)
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * (time.Second / 100), true
}
