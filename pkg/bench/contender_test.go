package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

// testSchema is igw serve's configuration schema, which the generated
// configurations are for.
var testSchema = engine.Schema(gateway.Kind())

// routed reports whether the routes of cfg, as the engine compiles them,
// send model at path anywhere.
func routed(t *testing.T, cfg *config.Config, model, path string) bool {
	t.Helper()
	e, err := engine.New(cfg, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return director.SelectRoute(e.Director().Policy().Routes, model, "", path, nil) != nil
}

func TestStandaloneConfig_BuiltinsLoadAndSchedule(t *testing.T) {
	replicas := []string{"127.0.0.1:41001", "127.0.0.1:41002", "127.0.0.1:41003"}
	wantPicker := map[string]string{
		ContenderIGWDefault:   "max-score-picker",
		ContenderIGWLatency:   "max-score-picker",
		ContenderRoundRobin:   "round-robin-picker",
		ContenderLeastRequest: "max-score-picker",
		ContenderRandom:       "random-picker",
	}
	wantScorers := map[string][]string{
		ContenderIGWDefault:   {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"},
		ContenderIGWLatency:   {"prefix-cache-scorer", "latency-scorer"},
		ContenderLeastRequest: {"least-request"},
	}
	for _, c := range BuiltinContenders() {
		t.Run(c.Name, func(t *testing.T) {
			data, err := StandaloneConfig(GatewayConfig{
				Address: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Replicas: replicas, Engine: "vllm",
				Models: []string{"meta-llama/Llama-3.1-8B-Instruct", "sql-lora"}, PickerConfig: c.PickerConfig,
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := testSchema.Parse(c.Name+".yaml", data)
			if err != nil {
				t.Fatalf("generated config does not load: %v\n%s", err, data)
			}
			if gw := gateway.Settings(cfg).Spec; gw.Address != "127.0.0.1:0" || gw.AdminAddress != "127.0.0.1:0" {
				t.Fatalf("gateway spec %+v", gw)
			}
			pools, routes := static.Pools(cfg), engine.Routes(cfg)
			if len(pools) != 1 || len(routes) != 1 {
				t.Fatalf("%d pools, %d routes; want 1 and 1", len(pools), len(routes))
			}
			var addrs []string
			for _, e := range static.PoolEndpoints(cfg, pools[0]) {
				addrs = append(addrs, e.Address)
				if e.Engine != datastore.EngineVLLM {
					t.Fatalf("endpoint %s engine %q", e.Address, e.Engine)
				}
			}
			if !slices.Equal(addrs, replicas) {
				t.Fatalf("pool endpoints %v, want exactly the replicas %v", addrs, replicas)
			}
			for _, m := range []string{"meta-llama/Llama-3.1-8B-Instruct", "sql-lora"} {
				if !routed(t, cfg, m, "/v1/chat/completions") {
					t.Fatalf("model %q not routed", m)
				}
			}
			if routed(t, cfg, "other", "/v1/chat/completions") {
				t.Fatal("an unknown model is routed")
			}

			// The scheduler the gateway would build from it.
			var s *scheduling.Scheduler
			if c.PickerConfig == "" {
				if cfg.Raw("EndpointPickerConfig") != nil {
					t.Fatal("igw-default must leave the EndpointPickerConfig out")
				}
				s, err = plugins.NewDefaultScheduler()
			} else {
				raw := cfg.Raw("EndpointPickerConfig").Data
				epc, perr := scheduling.ParseEndpointPickerConfig(raw)
				if perr != nil {
					t.Fatalf("EndpointPickerConfig: %v\n%s", perr, raw)
				}
				s, err = scheduling.NewScheduler(epc, plugins.NewRegistry())
			}
			if err != nil {
				t.Fatal(err)
			}
			p := s.Profiles()[0]
			if got := p.Picker().TypedName().Type; got != wantPicker[c.Name] {
				t.Fatalf("picker %q, want %q", got, wantPicker[c.Name])
			}
			var scorers []string
			for _, ws := range p.Scorers() {
				scorers = append(scorers, ws.Scorer.TypedName().Type)
			}
			if !slices.Equal(scorers, wantScorers[c.Name]) {
				t.Fatalf("scorers %v, want %v", scorers, wantScorers[c.Name])
			}
		})
	}
}

func TestStandaloneConfig_ObjectivesFromPriorityMix(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []int32
	}{
		{[]string{"critical", "standard", "sheddable"}, []int32{1, 0, -1}},
		{[]string{"high", "low"}, []int32{0, -1}},
		{[]string{"only"}, []int32{0}},
	} {
		data, err := StandaloneConfig(GatewayConfig{
			Address: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Replicas: []string{"127.0.0.1:1"},
			Models: []string{"m"}, Objectives: tc.names,
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := testSchema.Parse("objectives.yaml", data)
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		objs := static.ObjectivesFor(cfg, static.Pools(cfg)[0])
		var got []int32
		for _, o := range objs {
			got = append(got, o.Spec.EffectivePriority())
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("%v: priorities %v, want %v", tc.names, got, tc.want)
		}
	}
}

func TestStandaloneConfig_SharedPortsAndQuoting(t *testing.T) {
	// Replicas on several hosts sharing a port: one target port, one
	// endpoint per server; odd model names survive quoting.
	data, err := StandaloneConfig(GatewayConfig{
		Address: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Engine: "sglang",
		Replicas: []string{"10.0.0.1:8000", "10.0.0.2:8000"}, Models: []string{`we:ird "model" # x`},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := testSchema.Parse("shared.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	pool := static.Pools(cfg)[0]
	eps := static.PoolEndpoints(cfg, pool)
	if len(eps) != 2 || len(pool.Spec.TargetPorts) != 1 || eps[0].Engine != datastore.EngineSGLang {
		t.Fatalf("endpoints %+v, target ports %+v", eps, pool.Spec.TargetPorts)
	}
	if !routed(t, cfg, `we:ird "model" # x`, "/v1/completions") {
		t.Fatal("quoted model not routed")
	}
	if _, err := StandaloneConfig(GatewayConfig{Replicas: []string{"no-port"}}); err == nil {
		t.Fatal("a replica without a port was accepted")
	}
}

func TestParseContender(t *testing.T) {
	for _, tc := range []struct {
		spec, kind, url, cmd, err string
	}{
		{spec: "envoy=http://127.0.0.1:8080/", kind: ContenderURL, url: "http://127.0.0.1:8080"},
		{spec: "mine=cmd:./router --port {{.Port}} --backends {{.Replicas}}", kind: ContenderCommand, cmd: "./router --port {{.Port}} --backends {{.Replicas}}"},
		{spec: "nothing", err: "want NAME=URL"},
		{spec: "x=", err: "want NAME=URL"},
		{spec: "bad name=http://h", err: "name must be"},
		{spec: "x=ftp://h", err: "neither an http(s) URL"},
		{spec: "x=cmd:  ", err: "empty command"},
		{spec: "x=cmd:{{.Port", err: "command template"},
	} {
		c, err := ParseContender(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || c.Kind != tc.kind || c.URL != tc.url || c.Command != tc.cmd {
			t.Errorf("%q: %+v, %v", tc.spec, c, err)
		}
	}
}

// NAME=picker:FILE runs igw serve with the file's EndpointPickerConfig;
// a file that does not load fails at once, naming the file.
func TestParseContender_PickerFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "latency.yaml")
	cfg := pickerConfig([]string{"prefix-cache-scorer", "latency-scorer"}, map[string]float64{"prefix-cache-scorer": 1, "latency-scorer": 3}) +
		"saturationDetector:\n  queueDepthThreshold: 0\n"
	if err := os.WriteFile(good, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseContender("lat=picker:" + good)
	if err != nil || c.Kind != ContenderBuiltin || c.PickerConfig != cfg {
		t.Fatalf("%+v, %v", c, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(pickerConfig([]string{"no-such-scorer"}, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseContender("x=picker:" + bad); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("bad file: %v, want an error naming it", err)
	}
	if _, err := ParseContender("x=picker:" + filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestRenderCommand_FillsFleetAndPort(t *testing.T) {
	c, err := ParseContender("r=cmd:router -l 127.0.0.1:{{.Port}} -b {{.Replicas}} -u {{.ReplicaURLs}} -m {{.Model}}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := renderCommand(c, []string{"127.0.0.1:1", "127.0.0.1:2"}, 9000, "m")
	if err != nil {
		t.Fatal(err)
	}
	want := "router -l 127.0.0.1:9000 -b 127.0.0.1:1,127.0.0.1:2 -u http://127.0.0.1:1,http://127.0.0.1:2 -m m"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	bad, _ := ParseContender("r=cmd:router {{.Nope}}")
	if _, err := renderCommand(bad, nil, 1, "m"); err == nil {
		t.Fatal("an unknown template field was accepted")
	}
}

func TestFleetSettings(t *testing.T) {
	w := &Workload{Model: "m", Fleet: []byte(`{"replicas":3,"time-scale":5,"kv-cache-blocks":100}`)}
	fs, err := w.FleetSettings()
	if err != nil || fs.Replicas != 3 || fs.TimeScale != 5 || fs.Engine != "vllm" {
		t.Fatalf("%+v %v", fs, err)
	}
	fs, err = (&Workload{Model: "m"}).FleetSettings()
	if err != nil || fs.Replicas != 1 || fs.TimeScale != 1 {
		t.Fatalf("defaults %+v %v", fs, err)
	}
	if _, err := (&Workload{Model: "m", Fleet: []byte(`{"model":"other"}`)}).FleetSettings(); err == nil || !strings.Contains(err.Error(), `serves model "other"`) {
		t.Fatalf("model mismatch: %v", err)
	}
	if _, err := (&Workload{Model: "m", Fleet: []byte(`{"replicas":0}`)}).FleetSettings(); err == nil {
		t.Fatal("0 replicas accepted")
	}
	if got := missingAdapters([]string{"a=/p/a", "b"}, []string{"a", "c", "c", "b", "d"}); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("missing adapters %v", got)
	}
}

func TestStandaloneConfig_PreciseContenderSubscribesToEveryReplica(t *testing.T) {
	tok, err := filepath.Abs("../tokenizer/testdata/tiny-chatml")
	if err != nil {
		t.Fatal(err)
	}
	replicas := []string{"127.0.0.1:41001", "127.0.0.1:41002"}
	data, err := StandaloneConfig(GatewayConfig{
		Address: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Replicas: replicas, Models: []string{"m"},
		PickerConfig: precisePickerConfig(tok), KVEventsPorts: []int{5601, 5602},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := testSchema.Parse("precise.yaml", data)
	if err != nil {
		t.Fatalf("generated config does not load: %v\n%s", err, data)
	}
	eps := static.PoolEndpoints(cfg, static.Pools(cfg)[0])
	for i, e := range eps {
		if got, want := e.Labels[datastore.KVEventsPortLabel], []string{"5601", "5602"}[i]; got != want {
			t.Errorf("%s: kv-events port label %q, want %q", e.Address, got, want)
		}
	}
	s, err := plugins.NewSchedulerFromYAML(cfg.Raw("EndpointPickerConfig").Data)
	if err != nil {
		t.Fatalf("precise picker config: %v", err)
	}
	var types []string
	for _, ws := range s.Profiles()[0].Scorers() {
		types = append(types, ws.Scorer.TypedName().Type)
	}
	if !slices.Contains(types, "precise-prefix-cache-scorer") {
		t.Errorf("scorers %v lack the precise one", types)
	}
	// The optional contenders: precise ones read events, -xN ones run N.
	gateways := map[int]int{}
	for _, c := range OptionalContenders() {
		if strings.Contains(c.Name, "precise") != c.KVEvents || (c.Gateways > 0) != strings.HasSuffix(c.Name, fmt.Sprintf("-x%d", c.Gateways)) {
			t.Errorf("%+v", c)
		}
		gateways[c.Gateways]++
	}
	if gateways[1] != 2 || gateways[2] != 2 || gateways[3] != 2 {
		t.Errorf("replica counts %v, want the default and precise profiles as 1, 2 and 3 replicas", gateways)
	}
}
