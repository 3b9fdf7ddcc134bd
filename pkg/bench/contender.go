package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

// Contender kinds.
const (
	// ContenderBuiltin is `igw serve` with a generated configuration.
	ContenderBuiltin = "builtin"
	// ContenderURL is a gateway already running at a URL.
	ContenderURL = "url"
	// ContenderCommand is a gateway the comparison starts from a shell
	// command once it knows the fleet's addresses.
	ContenderCommand = "command"
)

// Contender is one router a comparison measures.
type Contender struct {
	// Name labels the contender in tables and charts.
	Name string `json:"name"`
	// Kind is ContenderBuiltin, ContenderURL or ContenderCommand.
	Kind string `json:"kind"`
	// Description says what the contender is, for the report.
	Description string `json:"description,omitempty"`
	// PickerConfig is a built-in contender's EndpointPickerConfig document;
	// empty means none, i.e. igw's default profile.
	PickerConfig string `json:"picker_config,omitempty"`
	// URL is a ContenderURL's base URL.
	URL string `json:"url,omitempty"`
	// Command is a ContenderCommand's shell command, a text/template with
	// {{.Replicas}} (comma-separated host:port of the replicas),
	// {{.ReplicaURLs}} (the same as http:// URLs), {{.Port}} (the port it
	// must listen on, on 127.0.0.1) and {{.Model}}.
	Command string `json:"command,omitempty"`
	// KVEvents makes a built-in contender route on the replicas' KV-cache
	// events (the precise-prefix-cache-scorer, with
	// CompareOptions.Tokenizer): every fleet of the comparison then
	// publishes events and tokenizes with that tokenizer, so all
	// contenders meet the same fleet.
	KVEvents bool `json:"kv_events,omitempty"`
	// Gateways, when set, runs a built-in contender as that many igw
	// serve replicas, active-active (in-flight counts shared through a
	// redis-server), behind haproxy balancing round-robin: what a
	// deployment with several gateway replicas behind a load balancer
	// gets. 1 is the baseline for 2 and 3: the same load balancer hop and
	// the same Redis, one replica.
	Gateways int `json:"gateways,omitempty"`
}

// Built-in contender names.
const (
	ContenderIGWDefault   = "igw-default"
	ContenderIGWLatency   = "igw-latency"
	ContenderRoundRobin   = "round-robin"
	ContenderLeastRequest = "least-request"
	ContenderRandom       = "random"
)

// Active-active and precise contenders (OptionalContenders).
const (
	ContenderIGWPrecise = "igw-precise"
)

// precisePickerConfig is igw's default profile with the
// precise-prefix-cache-scorer (tokenizer dir) in the prefix scorer's place,
// and speculative entries for the requests just routed.
func precisePickerConfig(tokenizer string) string {
	return "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n" +
		"- type: queue-scorer\n- type: kv-cache-utilization-scorer\n" +
		"- type: precise-prefix-cache-scorer\n  parameters: {tokenizer: " + quote(tokenizer) + ", speculativeTTL: 2s}\n" +
		"- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins:\n" +
		"  - pluginRef: queue-scorer\n    weight: 2\n  - pluginRef: kv-cache-utilization-scorer\n    weight: 2\n" +
		"  - pluginRef: precise-prefix-cache-scorer\n    weight: 3\n  - pluginRef: max-score-picker\n"
}

// OptionalContenders are built-in contenders a comparison runs only when
// named with --only: igw with precise prefix routing, and igw's default
// and precise profiles as one, two and three active-active replicas behind
// haproxy (issue 15). They need more than the standard run does (KV-cache
// events and a tokenizer in the fleet; haproxy and redis-server), so the
// standard comparison leaves them out.
func OptionalContenders() []Contender {
	out := []Contender{{
		Name: ContenderIGWPrecise, Kind: ContenderBuiltin, KVEvents: true,
		Description: "igw's default profile with the precise-prefix-cache-scorer (KV-cache events, the model's tokenizer) in place of the prefix-cache-scorer",
	}}
	for _, n := range []int{1, 2, 3} {
		out = append(out, Contender{
			Name: fmt.Sprintf("%s-x%d", ContenderIGWDefault, n), Kind: ContenderBuiltin, Gateways: n,
			Description: fmt.Sprintf("igw's default profile (approximate prefix) as %d igw serve replicas behind haproxy round-robin, in-flight shared through redis", n),
		}, Contender{
			Name: fmt.Sprintf("%s-x%d", ContenderIGWPrecise, n), Kind: ContenderBuiltin, Gateways: n, KVEvents: true,
			Description: fmt.Sprintf("igw-precise as %d igw serve replicas behind haproxy round-robin, in-flight shared through redis", n),
		})
	}
	return out
}

// pickerConfig renders an EndpointPickerConfig with the given plugins (in
// order, each referenced by the one profile with its weight; 0 means no
// weight, as for pickers).
func pickerConfig(plugins []string, weights map[string]float64) string {
	var b strings.Builder
	b.WriteString("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n")
	for _, p := range plugins {
		fmt.Fprintf(&b, "- type: %s\n", p)
	}
	b.WriteString("schedulingProfiles:\n- name: default\n  plugins:\n")
	for _, p := range plugins {
		if w := weights[p]; w > 0 {
			fmt.Fprintf(&b, "  - pluginRef: %s\n    weight: %g\n", p, w)
		} else {
			fmt.Fprintf(&b, "  - pluginRef: %s\n", p)
		}
	}
	return b.String()
}

// BuiltinContenders are the routers every comparison can run without
// anything installed: igw itself with its default profile, and the
// baselines it is measured against, all as `igw serve` so that the data
// plane is the same and only the scheduling differs.
func BuiltinContenders() []Contender {
	return []Contender{
		{
			Name: ContenderIGWDefault, Kind: ContenderBuiltin,
			Description: "igw's default profile: queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer 3, max-score-picker",
		},
		{
			Name: ContenderIGWLatency, Kind: ContenderBuiltin,
			Description: "igw's predicted-latency profile: prefix-cache-scorer 1, latency-scorer 3, max-score-picker",
			PickerConfig: pickerConfig([]string{"prefix-cache-scorer", "latency-scorer", "max-score-picker"},
				map[string]float64{"prefix-cache-scorer": 1, "latency-scorer": 3}),
		},
		{
			Name: ContenderRoundRobin, Kind: ContenderBuiltin,
			Description:  "round-robin-picker alone: what a Kubernetes Service gives",
			PickerConfig: pickerConfig([]string{"round-robin-picker"}, nil),
		},
		{
			Name: ContenderLeastRequest, Kind: ContenderBuiltin,
			Description:  "least-request scorer + max-score-picker: Envoy's LEAST_REQUEST, no model-server metrics",
			PickerConfig: pickerConfig([]string{"least-request", "max-score-picker"}, map[string]float64{"least-request": 1}),
		},
		{
			Name: ContenderRandom, Kind: ContenderBuiltin,
			Description:  "random-picker: uniform random choice",
			PickerConfig: pickerConfig([]string{"random-picker"}, nil),
		},
	}
}

var contenderName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseContender parses an external contender given on the command line:
// NAME=URL (a gateway already running, e.g. NAME=http://127.0.0.1:8080) or
// NAME=cmd:COMMAND (a shell command template, see Contender.Command), or
// NAME=picker:FILE (igw serve with that EndpointPickerConfig, checked
// here so a bad file fails before any fleet starts).
func ParseContender(spec string) (Contender, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok || rest == "" {
		return Contender{}, fmt.Errorf("contender %q: want NAME=URL or NAME=cmd:COMMAND", spec)
	}
	if !contenderName.MatchString(name) {
		return Contender{}, fmt.Errorf("contender %q: name must be letters, digits, '.', '_' or '-'", name)
	}
	if path, ok := strings.CutPrefix(rest, "picker:"); ok {
		cfg, err := os.ReadFile(path)
		if err != nil {
			return Contender{}, fmt.Errorf("contender %q: %w", name, err)
		}
		if _, err := plugins.NewSchedulerFromYAML(cfg); err != nil {
			return Contender{}, fmt.Errorf("contender %q: %s: %w", name, path, err)
		}
		return Contender{Name: name, Kind: ContenderBuiltin, PickerConfig: string(cfg),
			Description: "igw serve with the EndpointPickerConfig " + path}, nil
	}
	if cmd, ok := strings.CutPrefix(rest, "cmd:"); ok {
		if strings.TrimSpace(cmd) == "" {
			return Contender{}, fmt.Errorf("contender %q: empty command", name)
		}
		if _, err := template.New(name).Option("missingkey=error").Parse(cmd); err != nil {
			return Contender{}, fmt.Errorf("contender %q: command template: %w", name, err)
		}
		return Contender{Name: name, Kind: ContenderCommand, Command: cmd, Description: "command: " + cmd}, nil
	}
	u, err := url.Parse(rest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Contender{}, fmt.Errorf("contender %q: %q is neither an http(s) URL nor cmd:COMMAND", name, rest)
	}
	return Contender{Name: name, Kind: ContenderURL, URL: strings.TrimRight(rest, "/"), Description: "external gateway at " + rest}, nil
}

// commandVars are what a command contender's template can use.
type commandVars struct {
	Replicas    string
	ReplicaURLs string
	Port        int
	Model       string
}

// renderCommand fills in a command contender's template.
func renderCommand(c Contender, replicas []string, port int, model string) (string, error) {
	t, err := template.New(c.Name).Option("missingkey=error").Parse(c.Command)
	if err != nil {
		return "", fmt.Errorf("contender %s: %w", c.Name, err)
	}
	urls := make([]string, len(replicas))
	for i, r := range replicas {
		urls[i] = "http://" + r
	}
	var b bytes.Buffer
	err = t.Execute(&b, commandVars{
		Replicas: strings.Join(replicas, ","), ReplicaURLs: strings.Join(urls, ","), Port: port, Model: model,
	})
	if err != nil {
		return "", fmt.Errorf("contender %s: %w", c.Name, err)
	}
	return b.String(), nil
}

// GatewayConfig describes the standalone configuration generated for a
// built-in contender.
type GatewayConfig struct {
	// Address and AdminAddress are the listeners (host:port).
	Address, AdminAddress string
	// Replicas are the model servers' host:port.
	Replicas []string
	// Engine is their metric dialect (vllm, sglang).
	Engine string
	// Models are the names routed to the pool: the base model and the
	// LoRA adapters.
	Models []string
	// Objectives are InferenceObjective names, most important first.
	Objectives []string
	// PickerConfig is the EndpointPickerConfig document, or empty for the
	// default profile.
	PickerConfig string
	// KVEventsPorts, when set, are the ports replica i publishes its
	// KV-cache events on (ModelServer spec.kvEventsPort).
	KVEventsPorts []int
}

// poolName is the one InferencePool of a generated configuration.
const poolName = "bench"

// StandaloneConfig renders the YAML `igw serve` takes for c: a Gateway on
// the given loopback addresses, one ModelServer per replica (each listing
// its one port, so replicas can share 127.0.0.1), an InferencePool
// selecting them on all their ports, a Route sending the workload's models
// to the pool, an InferenceObjective per objective and the picker
// configuration. Objectives listed first matter most: with n of them they
// get priorities n−2 down to −1, so the last is sheddable, as the priority
// mix's names (critical, standard, sheddable) suggest; a lone objective
// gets 0.
func StandaloneConfig(c GatewayConfig) ([]byte, error) {
	if len(c.Replicas) == 0 {
		return nil, fmt.Errorf("gateway config: no replicas")
	}
	engine := c.Engine
	if engine == "" {
		engine = "vllm"
	}
	var b strings.Builder
	doc := func() { b.WriteString("---\n") }
	fmt.Fprintf(&b, "# Generated by igw bench compare.\napiVersion: igw.dev/v1alpha1\nkind: Gateway\nmetadata: {name: igw-bench}\nspec:\n  address: %s\n  adminAddress: %s\n",
		quote(c.Address), quote(c.AdminAddress))
	var ports []int
	for i, r := range c.Replicas {
		host, portStr, err := net.SplitHostPort(r)
		if err != nil {
			return nil, fmt.Errorf("gateway config: replica %q: %w", r, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("gateway config: replica %q: bad port", r)
		}
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
		doc()
		fmt.Fprintf(&b, "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata:\n  name: replica-%d\n  labels: {app: %s}\nspec:\n  address: %s\n  ports: [{number: %d}]\n  engine: %s\n",
			i, poolName, quote(host), port, quote(engine))
		if i < len(c.KVEventsPorts) && c.KVEventsPorts[i] > 0 {
			fmt.Fprintf(&b, "  kvEventsPort: %d\n", c.KVEventsPorts[i])
		}
	}
	doc()
	fmt.Fprintf(&b, "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: %s}\nspec:\n  selector:\n    matchLabels: {app: %s}\n  targetPorts:\n", poolName, poolName)
	for _, p := range ports {
		fmt.Fprintf(&b, "  - number: %d\n", p)
	}
	doc()
	fmt.Fprintf(&b, "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: %s}\nspec:\n", poolName)
	if len(c.Models) > 0 {
		b.WriteString("  matches:\n")
		for _, m := range c.Models {
			fmt.Fprintf(&b, "  - model: {value: %s}\n", quote(m))
		}
	}
	fmt.Fprintf(&b, "  backends:\n  - pool: %s\n", poolName)
	for i, o := range c.Objectives {
		doc()
		fmt.Fprintf(&b, "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: %s}\nspec:\n  priority: %d\n  poolRef: {name: %s}\n",
			quote(o), objectivePriority(i, len(c.Objectives)), poolName)
	}
	if c.PickerConfig != "" {
		doc()
		b.WriteString(strings.TrimRight(c.PickerConfig, "\n") + "\n")
	}
	return []byte(b.String()), nil
}

// objectivePriority is the priority of the i-th of n objectives: n−2 down
// to −1 (the last is sheddable); a lone objective gets 0.
func objectivePriority(i, n int) int {
	if n == 1 {
		return 0
	}
	return n - 2 - i
}

// quote writes s as a JSON string, which YAML reads as the same string
// whatever it contains.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
