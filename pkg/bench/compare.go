package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/tokenizer"
)

// CompareOptions configure a comparison (Compare).
type CompareOptions struct {
	// Binary is the igw binary whose `sim` and `serve` subcommands run the
	// fleet and the built-in contenders. The comparison drives them as
	// child processes rather than in process, so the load generator
	// measures real processes over real sockets, as it would any gateway,
	// and this package depends on neither the simulator nor the gateway.
	Binary string
	// Workload is what every contender is sent, with the same seed.
	Workload *Workload
	// WorkloadFile is where the workload came from, for the report.
	WorkloadFile string
	// Contenders run one after the other, in this order.
	Contenders []Contender
	// OutDir receives results.json, report.md, the charts, index.html and,
	// under logs/, every child process's configuration and output.
	OutDir string
	// FleetPort is the first replica's fixed port; 0 lets the replicas
	// take free ports. URL contenders (gateways configured ahead of the
	// run) need fixed ports.
	FleetPort int
	// Baseline is the contender the others are compared with (default
	// round-robin, if present; else the first).
	Baseline string
	// Command is the command line that ran the comparison, for the report.
	Command string
	// Log receives one line per contender phase; nil discards them.
	Log io.Writer
	// Progress, if set, receives a live progress line rewritten in place
	// (give it a terminal only).
	Progress io.Writer
	// ReadyTimeout bounds the wait for a fleet or a contender to become
	// ready (default 60s).
	ReadyTimeout time.Duration
	// KeepRequests also writes every request's measurements to
	// logs/<contender>.requests.json, to study a run over time (results.json
	// keeps only summaries), and runs igw's contenders with --access-log, so
	// logs/<contender>.gateway.log has the gateway's record of each (time
	// in admission, endpoint, retries).
	KeepRequests bool
	// Tokenizer is the Hugging Face tokenizer directory the fleet and the
	// KV-event contenders tokenize with, when a contender has KVEvents
	// (default DefaultTokenizer).
	Tokenizer string
	// HAProxy and RedisServer are the binaries contenders with several
	// gateways run (default: haproxy and redis-server on $PATH).
	HAProxy, RedisServer string
}

// DefaultTokenizer is the small tokenizer the repository carries: a
// comparison run from the repository's root finds it.
const DefaultTokenizer = "pkg/tokenizer/testdata/tiny-chatml"

// kvEvents reports whether a contender of the comparison routes on
// KV-cache events, which the fleets must then publish.
func (o CompareOptions) kvEvents() bool {
	for _, c := range o.Contenders {
		if c.KVEvents {
			return true
		}
	}
	return false
}

// withTokenizerVocabulary returns a copy of w whose prompts are made of
// words that are one token each in the tokenizer at dir: a fleet that
// tokenizes with it then sees prompts of the lengths w states.
func withTokenizerVocabulary(w *Workload, dir string) (*Workload, error) {
	tk, err := tokenizer.Load(dir, tokenizer.Options{})
	if err != nil {
		return nil, err
	}
	words, err := tk.OneTokenWords(8)
	if err != nil {
		return nil, err
	}
	if len(words) < minVocabulary {
		return nil, fmt.Errorf("tokenizer %s has %d one-token words, want at least %d to build prompts from", dir, len(words), minVocabulary)
	}
	cp := *w
	cp.Vocabulary = words
	return &cp, nil
}

func (o CompareOptions) tokenizer() string {
	if o.Tokenizer == "" {
		return DefaultTokenizer
	}
	return o.Tokenizer
}

// Comparison is everything a comparison measured (results.json).
type Comparison struct {
	// Workload is the workload every contender was sent.
	Workload *Workload `json:"workload"`
	// WorkloadFile and Command say how to rerun it.
	WorkloadFile string `json:"workload_file,omitempty"`
	Command      string `json:"command,omitempty"`
	// Fleet is the simulated fleet's settings the comparison used.
	Fleet FleetSettings `json:"fleet"`
	// Baseline names the contender ratios are computed against.
	Baseline string `json:"baseline"`
	// StartedAt and Elapsed time the whole comparison.
	StartedAt time.Time `json:"started_at"`
	Elapsed   Duration  `json:"elapsed"`
	// Host describes the machine, which matters for a 2-core run.
	Host Host `json:"host"`
	// Version is what the igw binary that ran the fleet and the built-in
	// contenders reports (`igw version`): the code that was measured.
	Version string `json:"version,omitempty"`
	// Contenders are the results, in run order.
	Contenders []ContenderResult `json:"contenders"`
}

// Host describes the machine a comparison ran on.
type Host struct {
	CPUs      int    `json:"cpus"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"go_version"`
}

// ContenderResult is one contender's run.
type ContenderResult struct {
	Contender
	// Target is the URL the load was sent to.
	Target string `json:"target,omitempty"`
	// Error is why the contender could not be measured (fully), if so.
	Error string `json:"error,omitempty"`
	// Interrupted is set when the run was cut short.
	Interrupted bool `json:"interrupted,omitempty"`
	// Elapsed is the load run's wall time, drain included.
	Elapsed Duration `json:"elapsed"`
	// Windows, Stages and Total are the run's plan and summaries (see
	// RunResult); individual requests are left out to keep the file
	// small.
	Windows []Window  `json:"windows,omitempty"`
	Stages  []Summary `json:"stages,omitempty"`
	Total   Summary   `json:"total"`
	// Failures are the distinct failures of the measured stages, most
	// frequent first (at most maxFailureKinds), to say why requests failed
	// without keeping every request.
	Failures []FailureCount `json:"failures,omitempty"`
	// Replicas are the model servers' own counters after the run, in
	// replica order; Fleet aggregates them.
	Replicas []ReplicaStats `json:"replicas,omitempty"`
	Fleet    FleetCache     `json:"fleet"`
	// CPU is the CPU time each process used, to tell a saturated machine
	// from a saturated (simulated) fleet.
	CPU CPUUsage `json:"cpu"`
}

// FailureCount is how many requests failed one way.
type FailureCount struct {
	Kind    ErrorKind `json:"kind"`
	Status  int       `json:"status,omitempty"`
	Message string    `json:"message"`
	Count   int       `json:"count"`
}

// maxFailureKinds bounds ContenderResult.Failures.
const maxFailureKinds = 10

// countFailures groups the failed (not cancelled or dropped) measured
// requests by kind, status and message.
func countFailures(rs []RequestResult) []FailureCount {
	type key struct {
		kind   ErrorKind
		status int
		msg    string
	}
	counts := map[key]int{}
	for i := range rs {
		r := &rs[i]
		if r.Warmup || r.OK() || r.ErrorKind == ErrCanceled || r.ErrorKind == ErrDropped {
			continue
		}
		msg := r.Error
		if len(msg) > 300 {
			msg = msg[:300]
		}
		counts[key{r.ErrorKind, r.Status, msg}]++
	}
	out := make([]FailureCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, FailureCount{Kind: k.kind, Status: k.status, Message: k.msg, Count: n})
	}
	slices.SortFunc(out, func(a, b FailureCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Message, b.Message)
	})
	if len(out) > maxFailureKinds {
		out = out[:maxFailureKinds]
	}
	return out
}

// CPUUsage is CPU time in seconds over a contender's run.
type CPUUsage struct {
	// Wall is the load run's wall time.
	Wall float64 `json:"wall"`
	// LoadGenerator is this process's CPU time during the load run.
	LoadGenerator float64 `json:"load_generator"`
	// Gateway and Fleet are the child processes' CPU time over their
	// whole life (start-up is a small part of it).
	Gateway float64 `json:"gateway"`
	Fleet   float64 `json:"fleet"`
	// Host is the CPU time every process on the machine used during the
	// load run (Linux only): what it has beyond the three above is other
	// work competing with the simulated fleet for the same cores, which
	// slows the simulated GPUs down and makes a run noisy.
	Host float64 `json:"host,omitempty"`
}

// Compare runs the workload against every contender, each in front of its
// own freshly started simulated fleet (so every contender meets cold KV
// caches and zeroed counters), and writes the report into OutDir. A
// contender that fails to start is recorded with its error and the others
// still run. On cancellation it stops every child process, writes what it
// has and returns the context's error.
func Compare(ctx context.Context, o CompareOptions) (*Comparison, error) {
	if o.Workload == nil || o.Binary == "" || o.OutDir == "" || len(o.Contenders) == 0 {
		return nil, errors.New("compare: workload, binary, output directory and at least one contender are required")
	}
	if len(o.Workload.Stages) == 0 {
		return nil, errors.New("compare: the workload has no stages")
	}
	fs, err := o.Workload.FleetSettings()
	if err != nil {
		return nil, fmt.Errorf("compare: workload %s: %w", o.Workload.Name, err)
	}
	seen := map[string]bool{}
	for _, c := range o.Contenders {
		if seen[c.Name] {
			return nil, fmt.Errorf("compare: contender %q listed twice", c.Name)
		}
		seen[c.Name] = true
		if c.Kind == ContenderURL && o.FleetPort == 0 {
			return nil, fmt.Errorf("compare: contender %q is a URL: give the fleet fixed ports (--fleet-port) and configure it with them", c.Name)
		}
	}
	if o.Baseline == "" {
		o.Baseline = o.Contenders[0].Name
		if seen[ContenderRoundRobin] {
			o.Baseline = ContenderRoundRobin
		}
	} else if !seen[o.Baseline] {
		return nil, fmt.Errorf("compare: baseline %q is not a contender", o.Baseline)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.kvEvents() {
		w, err := withTokenizerVocabulary(o.Workload, o.tokenizer())
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		o.Workload = w
		fmt.Fprintf(o.Log, "prompts are made of the %d words that are one token each in %s, so they are as long in its tokens as the workload says\n", len(w.Vocabulary), o.tokenizer())
	}
	logs := filepath.Join(o.OutDir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}

	cmp := &Comparison{
		Workload: o.Workload, WorkloadFile: o.WorkloadFile, Command: o.Command, Fleet: fs,
		Baseline: o.Baseline, StartedAt: time.Now(),
		Host:    Host{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()},
		Version: binaryVersion(ctx, o.Binary),
	}
	for i, c := range o.Contenders {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(o.Log, "[%d/%d] %s: %s\n", i+1, len(o.Contenders), c.Name, c.Description)
		r := runContender(ctx, o, c, logs)
		if r.Error != "" {
			fmt.Fprintf(o.Log, "[%d/%d] %s: %s\n", i+1, len(o.Contenders), c.Name, r.Error)
		} else {
			t := r.Total
			fmt.Fprintf(o.Log, "[%d/%d] %s: %d ok, %d failed in %s; prefix-cache hit rate %.0f%%\n",
				i+1, len(o.Contenders), c.Name, t.Succeeded, t.Failed, r.Elapsed.Round(time.Second), 100*r.Fleet.HitRate)
		}
		cmp.Contenders = append(cmp.Contenders, r)
	}
	cmp.Elapsed = Duration{time.Since(cmp.StartedAt)}
	if err := WriteReport(o.OutDir, cmp); err != nil {
		return cmp, err
	}
	if ctx.Err() != nil {
		return cmp, fmt.Errorf("compare: interrupted: %w", ctx.Err())
	}
	return cmp, nil
}

// runContender measures one contender in front of a fresh fleet; every
// child process it starts is stopped before it returns.
func runContender(parent context.Context, o CompareOptions, c Contender, logs string) ContenderResult {
	res := ContenderResult{Contender: c}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	fail := func(err error) ContenderResult {
		res.Error = err.Error()
		return res
	}

	fo := FleetOptions{
		Binary: o.Binary, Workload: o.Workload, Port: o.FleetPort, Dir: logs, Name: c.Name + ".", ReadyTimeout: o.ReadyTimeout,
	}
	if o.kvEvents() {
		// Every contender meets the same fleet: events on, the model's
		// tokenizer in use.
		fo.KVEvents, fo.Tokenizer = true, o.tokenizer()
	}
	fleet, err := StartSimFleet(ctx, fo)
	if err != nil {
		return fail(fmt.Errorf("starting the fleet: %w", err))
	}
	defer fleet.Stop()

	target, gw, err := startContender(ctx, o, c, fleet, logs)
	if err != nil {
		return fail(fmt.Errorf("starting the contender: %w", err))
	}
	if gw != nil {
		defer gw.stop()
	}
	res.Target = target

	client, err := NewClient(target, ClientOptions{})
	if err != nil {
		return fail(err)
	}
	defer client.Close()
	src, err := o.Workload.NewSource()
	if err != nil {
		return fail(err)
	}
	opts := o.Workload.Options()
	var progress *Progress
	if o.Progress != nil {
		progress = NewProgress(o.Progress, c.Name, opts)
		opts.OnResult = progress.Observe
		progress.Start()
	}
	host0, _, hostOK := hostCPU()
	cpu0, t0 := selfCPU(), time.Now()
	run, runErr := Run(ctx, client, src, opts)
	res.CPU.LoadGenerator = (selfCPU() - cpu0).Seconds()
	res.CPU.Wall = time.Since(t0).Seconds()
	if host1, _, ok := hostCPU(); ok && hostOK {
		res.CPU.Host = (host1 - host0).Seconds()
	}
	if progress != nil {
		progress.Stop()
	}
	if run != nil {
		res.Elapsed, res.Interrupted = run.Elapsed, run.Interrupted
		res.Windows, res.Stages, res.Total = run.Windows, run.Stages, run.Total
		res.Failures = countFailures(run.Requests)
		if o.KeepRequests {
			if err := writeJSON(filepath.Join(logs, c.Name+".requests.json"), run.Requests); err != nil {
				res.Error = errors.Join(errorOrNil(res.Error), err).Error()
			}
		}
	}
	if runErr != nil {
		res.Error = runErr.Error()
	}

	if ctx.Err() == nil {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		replicas, err := ScrapeReplicas(sctx, fleet.Addrs)
		scancel()
		if err != nil {
			res.Error = errors.Join(errorOrNil(res.Error), fmt.Errorf("reading replica metrics: %w", err)).Error()
		} else {
			res.Replicas, res.Fleet = replicas, AggregateReplicas(replicas)
		}
	}
	if gw != nil {
		gw.stop()
		res.CPU.Gateway = gw.cpu().Seconds()
	}
	fleet.Stop()
	res.CPU.Fleet = fleet.CPU().Seconds()
	return res
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func errorOrNil(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

// startContender starts (or, for a URL, checks) a contender in front of the
// fleet and returns the URL to send load to and its process, if any.
func startContender(ctx context.Context, o CompareOptions, c Contender, fleet *SimFleet, logs string) (string, *process, error) {
	deadline := time.NewTimer(o.ReadyTimeout)
	defer deadline.Stop()
	switch c.Kind {
	case ContenderBuiltin:
		if c.Gateways > 0 {
			return startGateways(ctx, o, c, fleet, logs, deadline.C)
		}
		ports, err := freePorts(2)
		if err != nil {
			return "", nil, err
		}
		addr, admin := loopback(ports[0]), loopback(ports[1])
		cfgPath, err := writeGatewayConfig(o, c, fleet, logs, c.Name, addr, admin)
		if err != nil {
			return "", nil, err
		}
		args := []string{o.Binary, "serve", "--config", cfgPath, "--log-level", "warn"}
		if o.KeepRequests {
			// Each request's record from the gateway's side too (time in
			// admission, endpoint, retries), beside the client's.
			args = append(args, "--access-log")
		}
		p, err := startProcess(ctx, "igw serve", args,
			filepath.Join(logs, c.Name+".gateway.log"), nil)
		if err != nil {
			return "", nil, err
		}
		// Ready means every pool has a scraped endpoint, so the first
		// request is scheduled on metrics, not on a guess.
		if err := waitHTTP(ctx, p, "http://"+admin+"/readyz", deadline.C); err != nil {
			p.stop()
			return "", nil, err
		}
		return "http://" + addr, p, nil
	case ContenderCommand:
		ports, err := freePorts(1)
		if err != nil {
			return "", nil, err
		}
		line, err := renderCommand(c, fleet.Addrs, ports[0], o.Workload.Model)
		if err != nil {
			return "", nil, err
		}
		p, err := startProcess(ctx, c.Name, []string{"/bin/sh", "-c", line}, filepath.Join(logs, c.Name+".contender.log"), nil)
		if err != nil {
			return "", nil, err
		}
		if err := waitTCP(ctx, p, loopback(ports[0]), deadline.C); err != nil {
			p.stop()
			return "", nil, err
		}
		return "http://" + loopback(ports[0]), p, nil
	case ContenderURL:
		u, err := url.Parse(c.URL)
		if err != nil {
			return "", nil, err
		}
		host := u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		if err := waitTCP(ctx, nil, host, deadline.C); err != nil {
			return "", nil, err
		}
		return c.URL, nil, nil
	}
	return "", nil, fmt.Errorf("contender %s: unknown kind %q", c.Name, c.Kind)
}

// binaryVersion asks the igw binary for its version line; empty if it
// cannot tell.
func binaryVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// writeGatewayConfig writes the standalone configuration of a built-in
// contender's gateway (name) listening on addr and admin.
func writeGatewayConfig(o CompareOptions, c Contender, fleet *SimFleet, logs, name, addr, admin string) (string, error) {
	var objectives []string
	for _, e := range o.Workload.PriorityMix {
		if e.Name != "" {
			objectives = append(objectives, e.Name)
		}
	}
	gc := GatewayConfig{
		Address: addr, AdminAddress: admin, Replicas: fleet.Addrs, Engine: fleet.Engine,
		Models: append([]string{o.Workload.Model}, o.Workload.loraAdapters()...), Objectives: objectives,
		PickerConfig: c.PickerConfig,
	}
	if c.KVEvents {
		gc.KVEventsPorts = fleet.KVEventsPorts
		if gc.PickerConfig == "" {
			tok, err := filepath.Abs(o.tokenizer())
			if err != nil {
				return "", err
			}
			gc.PickerConfig = precisePickerConfig(tok)
		}
	}
	cfg, err := StandaloneConfig(gc)
	if err != nil {
		return "", err
	}
	cfgPath := filepath.Join(logs, name+".gateway.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return "", err
	}
	return cfgPath, nil
}

// startGateways runs c as c.Gateways igw serve replicas sharing in-flight
// counts through a redis-server, behind haproxy balancing round-robin,
// all children of one shell so that they stop (and their CPU is counted)
// together. It returns haproxy's URL once every replica is ready.
func startGateways(ctx context.Context, o CompareOptions, c Contender, fleet *SimFleet, logs string, deadline <-chan time.Time) (string, *process, error) {
	haproxy, redis := o.HAProxy, o.RedisServer
	if haproxy == "" {
		haproxy = "haproxy"
	}
	if redis == "" {
		redis = "redis-server"
	}
	for _, bin := range []string{haproxy, redis} {
		if _, err := exec.LookPath(bin); err != nil {
			return "", nil, fmt.Errorf("contender %s needs %s (`make bench-tools` installs haproxy and redis-server): %w", c.Name, bin, err)
		}
	}
	ports, err := freePorts(2 + 2*c.Gateways)
	if err != nil {
		return "", nil, err
	}
	front, redisPort := loopback(ports[0]), ports[1]
	var script strings.Builder
	fmt.Fprintf(&script, "%s --port %d --bind 127.0.0.1 --save '' --appendonly no >%s 2>&1 &\n", shellQuote(redis), redisPort,
		shellQuote(filepath.Join(logs, c.Name+".redis.log")))
	// http-no-delay: without it haproxy coalesces a stream's small chunks
	// (one token each) for up to a few hundred milliseconds, which the
	// replicas' TTFT and inter-token latency would wrongly include.
	haCfg := "global\n  maxconn 4096\ndefaults\n  mode http\n  option http-no-delay\n  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\n" +
		"frontend igw\n  bind " + front + "\n  default_backend gateways\nbackend gateways\n  balance roundrobin\n"
	var admins []string
	for g := range c.Gateways {
		addr, admin := loopback(ports[2+2*g]), loopback(ports[3+2*g])
		name := fmt.Sprintf("%s.%d", c.Name, g)
		cfgPath, err := writeGatewayConfig(o, c, fleet, logs, name, addr, admin)
		if err != nil {
			return "", nil, err
		}
		fmt.Fprintf(&script, "%s serve --config %s --log-level warn --peer-load-redis 127.0.0.1:%d --replica-id %s >%s 2>&1 &\n",
			shellQuote(o.Binary), shellQuote(cfgPath), redisPort, shellQuote(name), shellQuote(filepath.Join(logs, name+".gateway.log")))
		haCfg += fmt.Sprintf("  server g%d %s\n", g, addr)
		admins = append(admins, admin)
	}
	haPath := filepath.Join(logs, c.Name+".haproxy.cfg")
	if err := os.WriteFile(haPath, []byte(haCfg), 0o644); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(&script, "%s -db -f %s &\nwait\n", shellQuote(haproxy), shellQuote(haPath))
	p, err := startProcess(ctx, c.Name, []string{"/bin/sh", "-c", script.String()}, filepath.Join(logs, c.Name+".contender.log"), nil)
	if err != nil {
		return "", nil, err
	}
	for _, admin := range admins {
		if err := waitHTTP(ctx, p, "http://"+admin+"/readyz", deadline); err != nil {
			p.stop()
			return "", nil, err
		}
	}
	if err := waitTCP(ctx, p, front, deadline); err != nil {
		p.stop()
		return "", nil, err
	}
	return "http://" + front, p, nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts returns n distinct free ports on 127.0.0.1. They are free when
// returned; a child that loses one to a race fails to start and says so.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
