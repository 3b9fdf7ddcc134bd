package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FleetSettings are the few settings of a workload's fleet section the
// comparison itself needs; the section as a whole is handed to `igw sim
// --config` untouched, so this package need not know the simulator (it
// validates its own settings strictly when it loads them).
type FleetSettings struct {
	// Replicas is the number of simulated model servers (default 1).
	Replicas int `json:"replicas"`
	// Model and ServedModelName are the names the fleet serves; unset, the
	// workload's model is passed.
	Model           string `json:"model"`
	ServedModelName string `json:"served-model-name"`
	// Engine is "vllm" (default) or "sglang": the metric names to read.
	Engine string `json:"engine"`
	// LoRAModules are the adapters served from the start.
	LoRAModules []string `json:"lora-modules"`
	// TimeScale divides every simulated duration (default 1).
	TimeScale float64 `json:"time-scale"`
}

// FleetSettings reads the fleet section's settings the comparison needs,
// with the simulator's defaults for what it leaves out.
func (w *Workload) FleetSettings() (FleetSettings, error) {
	fs := FleetSettings{Replicas: 1, Engine: "vllm", TimeScale: 1}
	if f := strings.TrimSpace(string(w.Fleet)); f != "" && f != "null" {
		if err := json.Unmarshal(w.Fleet, &fs); err != nil {
			return fs, fmt.Errorf("fleet: %w", err)
		}
	}
	if fs.Replicas < 1 {
		return fs, fmt.Errorf("fleet.replicas: must be ≥ 1, got %d", fs.Replicas)
	}
	served := fs.ServedModelName
	if served == "" {
		served = fs.Model
	}
	if served != "" && served != w.Model {
		return fs, fmt.Errorf("fleet serves model %q but the workload sends %q", served, w.Model)
	}
	return fs, nil
}

// loraAdapters are the adapters the workload's LoRA mix sends, which the
// fleet must serve.
func (w *Workload) loraAdapters() []string {
	var out []string
	for _, e := range w.LoRAMix {
		if e.Name != "" && e.Name != w.Model {
			out = append(out, e.Name)
		}
	}
	return out
}

// SimFleet is a simulated fleet started as a child process (`igw sim`),
// one per contender so that each starts with cold KV caches and zeroed
// counters.
type SimFleet struct {
	// Addrs are the replicas' host:port, in replica order.
	Addrs []string
	// KVEventsPorts are the ports replica i publishes KV-cache events on
	// (FleetOptions.KVEvents), in replica order.
	KVEventsPorts []int
	// Engine is the metric dialect the replicas speak.
	Engine string
	proc   *process
}

// FleetOptions say how to start a simulated fleet.
type FleetOptions struct {
	// Binary is the igw binary whose `sim` subcommand runs the fleet.
	Binary string
	// Workload supplies the fleet section, the model and the LoRA mix.
	Workload *Workload
	// Port is the first replica's port (replica i on Port+i); 0 lets every
	// replica take a free port, which is what the built-in contenders
	// need. A gateway configured ahead of the run needs fixed ports.
	Port int
	// Dir receives the fleet's configuration file and log.
	Dir string
	// Name prefixes the files in Dir.
	Name string
	// ReadyTimeout bounds the wait for every replica's /health (default
	// 60s).
	ReadyTimeout time.Duration
	// KVEvents makes every replica publish its KV-cache events (on a free
	// port each) and Tokenizer, when set, tokenize with that Hugging Face
	// directory (igw sim --tokenizer).
	KVEvents  bool
	Tokenizer string
}

// servingLine is what `igw sim` prints for each replica it serves, and
// kvEventsLine where it publishes the replica's KV-cache events.
var (
	servingLine  = regexp.MustCompile(`^serving .* on http://(\S+)$`)
	kvEventsLine = regexp.MustCompile(`^publishing KV-cache events of http://(\S+) on tcp://\S+:(\d+)$`)
)

// StartSimFleet starts `igw sim` with the workload's fleet section on
// 127.0.0.1 and waits until every replica answers /health. The fleet is
// stopped when ctx ends or Stop is called.
func StartSimFleet(ctx context.Context, o FleetOptions) (*SimFleet, error) {
	w := o.Workload
	fs, err := w.FleetSettings()
	if err != nil {
		return nil, err
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	cfgPath := filepath.Join(o.Dir, o.Name+"sim.yaml")
	fleetYAML := []byte("{}\n")
	if f := strings.TrimSpace(string(w.Fleet)); f != "" && f != "null" {
		fleetYAML = w.Fleet // JSON is YAML
	}
	if err := os.WriteFile(cfgPath, fleetYAML, 0o644); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	argv := []string{o.Binary, "sim", "--config", cfgPath, "--address", "127.0.0.1", "--port", strconv.Itoa(o.Port)}
	if fs.Model == "" && fs.ServedModelName == "" {
		argv = append(argv, "--model", w.Model)
	}
	if o.KVEvents {
		argv = append(argv, "--kv-events-config", `{"enable_kv_cache_events":true,"endpoint":"tcp://127.0.0.1:0"}`)
	}
	if o.Tokenizer != "" {
		argv = append(argv, "--tokenizer", o.Tokenizer)
	}
	if missing := missingAdapters(fs.LoRAModules, w.loraAdapters()); len(missing) > 0 {
		argv = append(argv, "--lora-modules", strings.Join(append(slices.Clone(fs.LoRAModules), missing...), ","))
	}

	pr, pw := io.Pipe()
	proc, err := startProcess(ctx, "igw sim", argv, filepath.Join(o.Dir, o.Name+"sim.log"), pw)
	if err != nil {
		pw.Close()
		return nil, err
	}
	f := &SimFleet{Engine: fs.Engine, proc: proc}
	go func() { <-proc.done; pw.Close() }()

	addrs := make(chan string, fs.Replicas)
	kvPorts := make(chan [2]string, fs.Replicas)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case addrs <- m[1]:
				default: // more lines than replicas: not ours to judge
				}
			}
			if m := kvEventsLine.FindStringSubmatch(line); m != nil {
				select {
				case kvPorts <- [2]string{m[1], m[2]}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	deadline := time.NewTimer(o.ReadyTimeout)
	defer deadline.Stop()
	for len(f.Addrs) < fs.Replicas {
		select {
		case a := <-addrs:
			f.Addrs = append(f.Addrs, a)
		case <-proc.done:
			return nil, proc.exitError()
		case <-deadline.C:
			f.Stop()
			return nil, fmt.Errorf("igw sim: %d of %d replicas listening after %s", len(f.Addrs), fs.Replicas, o.ReadyTimeout)
		case <-ctx.Done():
			f.Stop()
			return nil, ctx.Err()
		}
	}
	for _, a := range f.Addrs {
		if err := waitHTTP(ctx, proc, "http://"+a+"/health", deadline.C); err != nil {
			f.Stop()
			return nil, fmt.Errorf("igw sim replica %s: %w", a, err)
		}
	}
	if o.KVEvents {
		// igw sim prints each replica's events address right after its
		// serving line, before it is ready.
		ports := map[string]int{}
		for len(ports) < len(f.Addrs) {
			select {
			case m := <-kvPorts:
				ports[m[0]], _ = strconv.Atoi(m[1])
			case <-deadline.C:
				f.Stop()
				return nil, fmt.Errorf("igw sim: %d of %d replicas publishing KV-cache events after %s", len(ports), len(f.Addrs), o.ReadyTimeout)
			}
		}
		for _, a := range f.Addrs {
			f.KVEventsPorts = append(f.KVEventsPorts, ports[a])
		}
	}
	return f, nil
}

// missingAdapters are the wanted adapters not in have (entries of have may
// be vLLM's name=path).
func missingAdapters(have, want []string) []string {
	names := map[string]bool{}
	for _, h := range have {
		name, _, _ := strings.Cut(h, "=")
		names[name] = true
	}
	var out []string
	for _, w := range want {
		if !names[w] {
			out = append(out, w)
			names[w] = true
		}
	}
	return out
}

// Stop stops the fleet and waits for it.
func (f *SimFleet) Stop() { f.proc.stop() }

// CPU is the CPU time the fleet used, once stopped.
func (f *SimFleet) CPU() time.Duration { return f.proc.cpu() }

// waitHTTP polls url until it answers 200, proc (if not nil) dies or the
// deadline fires.
func waitHTTP(ctx context.Context, proc *process, url string, deadline <-chan time.Time) error {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		var last error
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: status %d", url, resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-tick.C:
		case <-doneChan(proc):
			return proc.exitError()
		case <-deadline:
			return fmt.Errorf("not ready in time: %w", last)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitTCP waits until addr accepts connections, proc (if not nil) dies or the
// deadline fires: all an external contender is known to offer.
func waitTCP(ctx context.Context, proc *process, addr string, deadline <-chan time.Time) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-tick.C:
		case <-doneChan(proc):
			return proc.exitError()
		case <-deadline:
			return fmt.Errorf("%s: not accepting connections in time: %w", addr, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
