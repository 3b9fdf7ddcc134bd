package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/bench"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark OpenAI-compatible targets and compare routers side by side",
		Long: `bench sends reproducible workloads (bench/workloads/*.yaml) to OpenAI-compatible
targets and measures every streamed request: time to first token, inter-token
latency, end-to-end latency, throughput and errors, per load stage.

  igw bench run      one target, one workload: a summary table and results.json
  igw bench compare  the same workload, with the same seed, through several
                     routers, each in front of its own fresh simulated fleet:
                     results.json, report.md, charts and index.html
  igw bench report   write a comparison's report again from its results.json
  igw bench picker   an Endpoint Picker (ext_proc) alone: decisions per second,
                     round-trip latency, CPU and allocation per decision
  igw bench overhead what a gateway adds: the same requests through it and
                     straight to the model server (added TTFB, its CPU and
                     allocation per request)`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchRunCommand(), newBenchCompareCommand(), newBenchReportCommand(), newBenchPickerCommand(), newBenchOverheadCommand())
	return cmd
}

func newBenchReportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Rewrite a comparison's report from its results.json",
		Long: `report reads DIR/results.json, written by igw bench compare, and writes
report.md, the charts and index.html again, without rerunning anything.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(filepath.Join(args[0], bench.ReportJSON))
			if err != nil {
				return err
			}
			var c bench.Comparison
			if err := json.Unmarshal(data, &c); err != nil {
				return fmt.Errorf("%s: %w", bench.ReportJSON, err)
			}
			if c.Workload == nil {
				return fmt.Errorf("%s: no workload: not written by igw bench compare", bench.ReportJSON)
			}
			if err := bench.WriteReport(args[0], &c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", filepath.Join(args[0], bench.ReportHTML))
			return nil
		},
	}
}

type benchRunFlags struct {
	target, workload, out string
	headers               []string
	maxDuration           time.Duration
	maxRequests           int
}

func newBenchRunCommand() *cobra.Command {
	var f benchRunFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a workload against one OpenAI-compatible URL",
		Long: `run sends the workload's stages to --target (a gateway or a model server),
prints a summary table per stage and writes every measurement to
DIR/results.json and the table to DIR/report.md.`,
		Example: `  igw bench run --target http://127.0.0.1:8080 --workload bench/workloads/sharegpt.yaml
  igw bench run --target http://127.0.0.1:8001 --workload w.yaml --out /tmp/run --header 'Authorization: Bearer x'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchRun(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "base URL of the OpenAI-compatible target (required)")
	fl.StringVar(&f.workload, "workload", "", "workload file (required)")
	fl.StringVar(&f.out, "out", "", "output directory (default bench/results/<workload>-run)")
	fl.StringArrayVar(&f.headers, "header", nil, "extra request header 'Name: value' (repeatable)")
	fl.DurationVar(&f.maxDuration, "max-duration", 0, "cut the run short after this long (0: the workload's)")
	fl.IntVar(&f.maxRequests, "max-requests", 0, "stop after this many requests (0: the workload's)")
	_ = cmd.MarkFlagRequired("target")
	_ = cmd.MarkFlagRequired("workload")
	return cmd
}

func runBenchRun(ctx context.Context, stdout io.Writer, f benchRunFlags) error {
	w, err := bench.LoadWorkload(f.workload)
	if err != nil {
		return err
	}
	if len(w.Stages) == 0 {
		return fmt.Errorf("workload %s has no stages", f.workload)
	}
	headers := http.Header{}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	client, err := bench.NewClient(f.target, bench.ClientOptions{Headers: headers})
	if err != nil {
		return err
	}
	defer client.Close()
	src, err := w.NewSource()
	if err != nil {
		return err
	}
	opts := w.Options()
	if f.maxDuration > 0 {
		opts.MaxDuration = f.maxDuration
	}
	if f.maxRequests > 0 {
		opts.MaxRequests = f.maxRequests
	}
	out := f.out
	if out == "" {
		out = filepath.Join("bench", "results", w.Name+"-run")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "igw bench run: %s → %s (%d stages)\n", w.Name, f.target, len(w.Stages))
	var progress *bench.Progress
	if isTerminal(stdout) {
		progress = bench.NewProgress(stdout, w.Name, opts)
		opts.OnResult = progress.Observe
		progress.Start()
	}
	res, runErr := bench.Run(ctx, client, src, opts)
	if progress != nil {
		progress.Stop()
	}
	if res == nil {
		return runErr
	}
	table := bench.RunTable(res).Markdown()
	if len(res.Total.Endpoints) > 1 || res.Total.Endpoints[bench.UnknownEndpoint].Requests == 0 {
		table += "\n" + bench.EndpointTable(res.Total).Markdown()
	}
	fmt.Fprintf(stdout, "\n%s\n", table)
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, bench.ReportJSON), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := fmt.Sprintf("# igw bench run: %s\n\nTarget %s, %s.\n\n%s", w.Name, f.target, res.StartedAt.UTC().Format(time.RFC3339), table)
	if err := os.WriteFile(filepath.Join(out, bench.ReportMarkdown), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(out, bench.ReportJSON), filepath.Join(out, bench.ReportMarkdown))
	return runErr
}

type benchCompareFlags struct {
	workload, out, igw, baseline string
	contenders, only             []string
	tokenizer, haproxy           string
	redisServer                  string
	fleetPort                    int
	readyTimeout                 time.Duration
	keepRequests                 bool
}

func newBenchCompareCommand() *cobra.Command {
	var f benchCompareFlags
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare routers on the same workload and simulated fleet",
		Long: `compare runs the workload through each contender in turn. For each it starts a
fresh simulated fleet ("igw sim" with the workload's fleet section, so every
contender meets cold KV caches), starts the contender, sends the workload with
the same seed, reads each replica's /metrics (prefix-cache hits, requests,
tokens) and stops everything.

Built-in contenders, each "igw serve" with a generated configuration:
  igw-default    igw's default profile (queue 2, KV cache 2, prefix cache 3)
  round-robin    round-robin-picker: the Kubernetes Service baseline
  least-request  least-request scorer + max-score-picker
  random         random-picker
  igw-latency    prefix cache 1 + latency-scorer 3 (predicted latency)

External contenders (--contender, repeatable):
  NAME=picker:FILE  "igw serve" with the EndpointPickerConfig in FILE, to
                    compare igw profiles and admission settings
  NAME=URL          a gateway already running; give the fleet fixed ports
                    with --fleet-port and configure the gateway with them
  NAME=cmd:COMMAND  a shell command started after the fleet; {{.Replicas}}
                    (host:port,...), {{.ReplicaURLs}}, {{.Port}} (where it
                    must listen on 127.0.0.1) and {{.Model}} are filled in

Writes results.json, report.md, TTFT/throughput/share charts (SVG and PNG) and
index.html into --out; child process configurations and logs go to
--out/logs.`,
		Example: `  igw bench compare --workload bench/workloads/shared-prefix.yaml --out bench/results/shared-prefix
  igw bench compare --workload w.yaml --out /tmp/cmp --only igw-default,round-robin
  igw bench compare --workload w.yaml --out /tmp/cmp --contender 'direct=cmd:my-router --port {{.Port}} --backends {{.Replicas}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchCompare(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.workload, "workload", "", "workload file with stages and a fleet section (required)")
	fl.StringVar(&f.out, "out", "", "output directory (default bench/results/<workload>)")
	fl.StringArrayVar(&f.contenders, "contender", nil, "external contender NAME=URL, NAME=cmd:COMMAND or NAME=picker:FILE (repeatable)")
	fl.StringSliceVar(&f.only, "only", nil, "run only these contenders (comma-separated names); also names the optional ones: igw-precise, and igw-default-xN, igw-precise-xN for N = 1, 2, 3 (N replicas behind haproxy)")
	fl.StringVar(&f.tokenizer, "tokenizer", bench.DefaultTokenizer, "Hugging Face tokenizer directory the fleet and the precise contenders use (when one runs)")
	fl.StringVar(&f.haproxy, "haproxy", "haproxy", "haproxy binary, for the -xN contenders")
	fl.StringVar(&f.redisServer, "redis-server", "redis-server", "redis-server binary, for the -xN contenders")
	fl.StringVar(&f.baseline, "baseline", "", "contender the others are compared with (default round-robin)")
	fl.IntVar(&f.fleetPort, "fleet-port", 0, "first replica's port (0: free ports); needed by URL contenders")
	fl.StringVar(&f.igw, "igw", "", "igw binary that runs the fleet and the built-in contenders (default: this one)")
	fl.DurationVar(&f.readyTimeout, "ready-timeout", 60*time.Second, "how long a fleet or contender may take to become ready")
	fl.BoolVar(&f.keepRequests, "keep-requests", false, "also write every request's measurements to --out/logs/<contender>.requests.json, and run igw's contenders with --access-log (their logs/<contender>.gateway.log)")
	_ = cmd.MarkFlagRequired("workload")
	return cmd
}

// selectContenders is the built-in contenders plus the external ones,
// narrowed to --only (in the order given there), which may also name the
// optional built-ins (bench.OptionalContenders).
func selectContenders(external, only []string) ([]bench.Contender, error) {
	all := bench.BuiltinContenders()
	for _, spec := range external {
		c, err := bench.ParseContender(spec)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(all, func(o bench.Contender) bool { return o.Name == c.Name }) {
			return nil, fmt.Errorf("contender %q: name already taken", c.Name)
		}
		all = append(all, c)
	}
	if len(only) == 0 {
		return all, nil
	}
	all = append(all, bench.OptionalContenders()...)
	var out []bench.Contender
	var errs []error
	for _, name := range only {
		i := slices.IndexFunc(all, func(c bench.Contender) bool { return c.Name == name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("--only: unknown contender %q", name))
			continue
		}
		out = append(out, all[i])
	}
	return out, errors.Join(errs...)
}

func runBenchCompare(ctx context.Context, stdout io.Writer, f benchCompareFlags) error {
	w, err := bench.LoadWorkload(f.workload)
	if err != nil {
		return err
	}
	contenders, err := selectContenders(f.contenders, f.only)
	if err != nil {
		return err
	}
	bin := f.igw
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("locating the igw binary (give --igw): %w", err)
		}
	}
	out := f.out
	if out == "" {
		out = filepath.Join("bench", "results", w.Name)
	}
	o := bench.CompareOptions{
		Binary: bin, Workload: w, WorkloadFile: f.workload, Contenders: contenders, OutDir: out,
		FleetPort: f.fleetPort, Baseline: f.baseline, Command: commandLine(), Log: stdout, ReadyTimeout: f.readyTimeout,
		KeepRequests: f.keepRequests, Tokenizer: f.tokenizer, HAProxy: f.haproxy, RedisServer: f.redisServer,
	}
	if isTerminal(stdout) {
		o.Progress = stdout
	}
	fs, err := w.FleetSettings()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "igw bench compare: %s, %d contenders, %d replicas each (time-scale %g) → %s\n",
		w.Name, len(contenders), fs.Replicas, fs.TimeScale, out)
	cmp, err := bench.Compare(ctx, o)
	if cmp != nil {
		fmt.Fprintf(stdout, "\n%s\nwrote %s (%s, %s) in %s\n", cmp.KeyFigures().Markdown(), filepath.Join(out, bench.ReportHTML),
			bench.ReportMarkdown, bench.ReportJSON, cmp.Elapsed.Round(time.Second))
	}
	return err
}

// isTerminal reports whether w is a terminal, for the live progress line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && bench.IsTerminal(f)
}

// commandLine is how this process was invoked, for the report.
func commandLine() string {
	args := make([]string, 0, len(os.Args))
	args = append(args, "igw")
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"{}$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
