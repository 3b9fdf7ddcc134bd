package charttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// fieldManager names the server-side-apply manager of every dry run.
const fieldManager = "igw-chart-test"

// tools runs bin/helm and bin/kubectl with their state kept in a temporary
// directory, against one API server.
type tools struct {
	root, chart      string
	helmBin, kubectl string
	igw              string
	kubeconfig       string
	helmEnv          []string
	kubeCache        string
}

// rendered is one `helm template` output, decoded.
type rendered struct {
	text string
	objs []*unstructured.Unstructured
}

// chartCase is one set of values the chart must render and the API server
// must accept.
type chartCase struct {
	name      string
	release   string
	namespace string
	args      []string // helm --set / --set-json / --values
	want      []string // "Kind/name" of every rendered object
	check     func(t *testing.T, r rendered)
}

// TestChart_RendersLintsAndDryRunsOnAPIServer is the chart's end-to-end
// test: every value set lints cleanly, renders the objects it should with
// the values it should, and every rendered object is accepted by a real
// kube-apiserver in a server-side-apply dry run (schema, CRD validation
// rules, strict field validation). Bad values are refused either by
// values.schema.json (helm) or by the API server, naming the problem. The
// examples of docs/kubernetes.md and the chart's README are held to the
// same standard, and last the chart is installed for real and igw epp run
// from what it renders (live_test.go).
func TestChart_RendersLintsAndDryRunsOnAPIServer(t *testing.T) {
	tl := startAPIServer(t)
	for _, ns := range []string{"inference", "models", "gateways"} {
		tl.mustKubectl(t, "", "create", "namespace", ns)
	}

	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			lintArgs := append([]string{"lint", "--strict", tl.chart, "--namespace", tc.namespace}, tc.args...)
			if out, err := tl.helm(lintArgs...); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			r := tl.render(t, tc.release, tc.namespace, tc.args)
			want := slices.Sorted(slices.Values(tc.want))
			if got := kindNames(r.objs); !slices.Equal(got, want) {
				t.Fatalf("rendered objects:\n got %v\nwant %v", got, want)
			}
			for _, o := range r.objs {
				if o.GetNamespace() != tc.namespace {
					t.Errorf("%s/%s: namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), tc.namespace)
				}
			}
			tc.check(t, r)

			out, err := tl.dryRunApply(r.text)
			if err != nil {
				t.Fatalf("kubectl apply --server-side --dry-run=server: %v\n%s", err, out)
			}
			if got, want := appliedLines(out), expectedApplied(r.objs); !slices.Equal(got, want) {
				t.Fatalf("kubectl reported:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}

	t.Run("schema refuses bad values", func(t *testing.T) {
		for _, bad := range []struct {
			args []string
			want string // in helm's error
		}{
			{[]string{"--set", "inferenceExtension.failureMode=Sometimes"}, "failureMode"},
			{[]string{"--set", "provider.name=nginx"}, "provider"},
			{[]string{"--set-json", "inferencePool.targetPorts=[]"}, "targetPorts"},
			{[]string{"--set-json", "inferencePool.targetPorts=[{\"number\":70000}]"}, "targetPorts"},
			{[]string{"--set-json", "inferencePool.modelServers.matchLabels=null"}, "matchLabels"}, // null deletes the default
			{[]string{"--set", "inferenceExtension.replicas=0"}, "replicas"},
			{[]string{"--set", "inferenceExtension.replica=2"}, "replica"}, // a typo is not ignored
			{[]string{"--set", "inferencePool.name=Llama"}, "name"},
			{[]string{"--set", "inferenceExtension.activeActive.enabled=true"}, "redis"}, // active-active needs its Redis
		} {
			out, err := tl.helm(append([]string{"template", "x", tl.chart, "--namespace", "inference"}, bad.args...)...)
			if err == nil {
				t.Errorf("helm template %v: rendered, want a schema error", bad.args)
				continue
			}
			if !strings.Contains(out, "schema") || !strings.Contains(out, bad.want) {
				t.Errorf("helm template %v: error does not name the schema and %q:\n%s", bad.args, bad.want, out)
			}
		}
	})

	t.Run("API server refuses what the schema lets through", func(t *testing.T) {
		for _, bad := range []struct {
			args []string
			want string // in kubectl's error
		}{
			// a CEL rule of the InferencePool CRD (config/crd/bases)
			{[]string{"--set-json", `inferencePool.targetPorts=[{"number":8000},{"number":8000}]`}, "port number must be unique"},
			// core validation of the Deployment
			{[]string{"--set", "inferenceExtension.resources.requests.cpu=lots"}, "quantities must match"},
			// the DestinationRule CRD of testdata/crds
			{[]string{"--set", "provider.name=istio", "--set", "provider.istio.destinationRule.trafficPolicy.tls.mode=BOGUS"}, "Unsupported value: \"BOGUS\""},
			// strict field validation: an unknown field is an error, not dropped
			{[]string{"--set", "provider.name=istio", "--set", "provider.istio.destinationRule.trafficPolicy.outlierDetection.consecutiveErrors=5"}, ".spec.trafficPolicy.outlierDetection: field not declared in schema"},
		} {
			r := tl.render(t, "bad", "inference", bad.args)
			out, err := tl.dryRunApply(r.text)
			if err == nil {
				t.Errorf("%v: the API server accepted it:\n%s", bad.args, out)
				continue
			}
			if !strings.Contains(out, bad.want) {
				t.Errorf("%v: error does not say %q:\n%s", bad.args, bad.want, out)
			}
		}
	})

	t.Run("igw-gateway chart", func(t *testing.T) { tl.checkGatewayChart(t) })

	for _, doc := range []string{filepath.Join("docs", "kubernetes.md"), filepath.Join("config", "charts", "inferencepool", "README.md")} {
		t.Run(doc, func(t *testing.T) { tl.checkDocument(t, doc) })
	}

	t.Run("dry run persisted nothing", func(t *testing.T) {
		for _, resource := range []string{"inferencepools", "deployments", "destinationrules", "gcpbackendpolicies"} {
			out := tl.mustKubectl(t, "", "get", resource, "--all-namespaces", "-o", "name")
			if strings.TrimSpace(out) != "" {
				t.Errorf("kubectl get %s: %q, want nothing after dry runs", resource, out)
			}
		}
	})

	for _, lc := range liveCases() {
		t.Run("installed for real, igw epp runs the Deployment's command line: "+lc.name, func(t *testing.T) { tl.checkPickerRuns(t, lc) })
	}
}

func chartCases() []chartCase {
	return []chartCase{{
		name: "defaults", release: "llama", namespace: "inference",
		want: []string{"ConfigMap/llama-epp", "Deployment/llama-epp", "InferencePool/llama", "Role/llama-epp",
			"RoleBinding/llama-epp", "Service/llama-epp", "ServiceAccount/llama-epp"},
		check: func(t *testing.T, r rendered) {
			pool := r.get(t, "InferencePool", "llama")
			wantField(t, pool, map[string]any{"app": "vllm-llama3-8b-instruct"}, "spec", "selector", "matchLabels")
			wantField(t, pool, []any{map[string]any{"number": int64(8000)}}, "spec", "targetPorts")
			wantField(t, pool, "http", "spec", "appProtocol")
			wantField(t, pool, map[string]any{"group": "", "kind": "Service", "name": "llama-epp",
				"port": map[string]any{"number": int64(9002)}, "failureMode": "FailClose"}, "spec", "endpointPickerRef")

			dep := r.get(t, "Deployment", "llama-epp")
			wantField(t, dep, int64(1), "spec", "replicas")
			c := container(t, dep)
			wantField(t, c, []any{"epp", "--pool-name", "llama", "--pool-namespace", "inference",
				"--grpc-port", "9002", "--grpc-health-port", "9003", "--metrics-port", "9090",
				"--config-file", "/etc/igw/endpoint-picker-config.yaml", "--log-level", "info",
				"--drain-timeout", "125s"}, "args")
			wantField(t, c, map[string]any{"grpc": map[string]any{"port": int64(9003), "service": "liveness"},
				"initialDelaySeconds": int64(5), "periodSeconds": int64(10)}, "livenessProbe")
			wantField(t, c, map[string]any{"port": int64(9003), "service": "readiness"}, "readinessProbe", "grpc")
			wantField(t, c, "igw:0.1.0", "image")
			wantField(t, dep, "llama-epp", "spec", "template", "spec", "serviceAccountName")

			svc := r.get(t, "Service", "llama-epp")
			wantField(t, svc, []any{
				map[string]any{"name": "grpc-ext-proc", "protocol": "TCP", "port": int64(9002), "targetPort": "grpc-ext-proc"},
				map[string]any{"name": "http-metrics", "protocol": "TCP", "port": int64(9090), "targetPort": "http-metrics"},
			}, "spec", "ports")
			// the Service must select the picker's pods and only them
			sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
			podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
			for k, v := range sel {
				if podLabels[k] != v {
					t.Errorf("Service selector %s=%s not on the picker's pods %v", k, v, podLabels)
				}
			}

			epc := pickerConfig(t, r, "llama-epp")
			if epc["kind"] != "EndpointPickerConfig" || epc["apiVersion"] != "inference.networking.x-k8s.io/v1alpha1" {
				t.Errorf("ConfigMap holds %v/%v, want an EndpointPickerConfig", epc["apiVersion"], epc["kind"])
			}
			weights := map[string]float64{}
			profiles, _ := epc["schedulingProfiles"].([]any)
			if len(profiles) != 1 {
				t.Fatalf("schedulingProfiles = %v, want the one default profile", profiles)
			}
			for _, p := range profiles[0].(map[string]any)["plugins"].([]any) {
				ref := p.(map[string]any)
				w, _ := ref["weight"].(float64)
				weights[ref["pluginRef"].(string)] = w
			}
			if want := map[string]float64{"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3, "max-score-picker": 0}; !mapsEqual(weights, want) {
				t.Errorf("default profile weights = %v, want %v", weights, want)
			}

			role := r.get(t, "Role", "llama-epp")
			rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
			granted := map[string][]string{} // group/resource -> verbs
			for _, rule := range rules {
				m := rule.(map[string]any)
				for _, g := range m["apiGroups"].([]any) {
					for _, res := range m["resources"].([]any) {
						for _, v := range m["verbs"].([]any) {
							key := g.(string) + "/" + res.(string)
							granted[key] = append(granted[key], v.(string))
						}
					}
				}
			}
			read := []string{"get", "list", "watch"}
			for key, verbs := range map[string][]string{
				"/pods": read, "/configmaps": read,
				"inference.networking.k8s.io/inferencepools":           read,
				"inference.networking.k8s.io/inferencepools/status":    {"get", "update", "patch"},
				"gateway.networking.k8s.io/httproutes":                 read,
				"inference.networking.x-k8s.io/inferenceobjectives":    read,
				"inference.networking.x-k8s.io/inferencemodelrewrites": read,
				"llm-d.ai/inferenceobjectives":                         read,
				"llm-d.ai/inferencemodelrewrites":                      read,
				"coordination.k8s.io/leases":                           {"get", "list", "watch", "create", "update", "patch"},
				"/events":                                              {"create", "patch"},
				"events.k8s.io/events":                                 {"create", "patch"},
			} {
				if !slices.Equal(granted[key], verbs) {
					t.Errorf("Role grants %s %v, want %v", key, granted[key], verbs)
				}
				delete(granted, key)
			}
			if len(granted) != 0 {
				t.Errorf("Role grants more than the picker needs: %v", granted)
			}
		},
	}, {
		name: "istio, three replicas, FailOpen, three ports", release: "qwen", namespace: "inference",
		args: []string{
			"--set", "provider.name=istio",
			"--set", "inferenceExtension.replicas=3",
			"--set", "inferenceExtension.failureMode=FailOpen",
			"--set-json", `inferencePool.modelServers.matchLabels={"app":"vllm-qwen","inference.networking.k8s.io/engine-type":"vllm"}`,
			"--set-json", `inferencePool.targetPorts=[{"number":8000},{"number":8001},{"number":8002}]`,
			"--set", "inferenceExtension.flags.metrics-staleness-threshold=500ms",
			"--set", "provider.istio.destinationRule.trafficPolicy.connectionPool.http.http2MaxRequests=1000",
		},
		want: []string{"ConfigMap/qwen-epp", "DestinationRule/qwen-epp", "Deployment/qwen-epp", "InferencePool/qwen",
			"Role/qwen-epp", "RoleBinding/qwen-epp", "Service/qwen-epp", "ServiceAccount/qwen-epp"},
		check: func(t *testing.T, r rendered) {
			pool := r.get(t, "InferencePool", "qwen")
			wantField(t, pool, "FailOpen", "spec", "endpointPickerRef", "failureMode")
			wantField(t, pool, map[string]any{"app": "vllm-qwen", "inference.networking.k8s.io/engine-type": "vllm"},
				"spec", "selector", "matchLabels")
			wantField(t, pool, []any{map[string]any{"number": int64(8000)}, map[string]any{"number": int64(8001)},
				map[string]any{"number": int64(8002)}}, "spec", "targetPorts")

			dep := r.get(t, "Deployment", "qwen-epp")
			wantField(t, dep, int64(3), "spec", "replicas")
			args, _, _ := unstructured.NestedStringSlice(container(t, dep), "args")
			for _, want := range []string{"--ha-enable-leader-election", "--metrics-staleness-threshold=500ms"} {
				if !slices.Contains(args, want) {
					t.Errorf("args %v lack %s", args, want)
				}
			}

			dr := r.get(t, "DestinationRule", "qwen-epp")
			wantField(t, dr, "qwen-epp.inference.svc.cluster.local", "spec", "host")
			wantField(t, dr, map[string]any{
				"tls":            map[string]any{"mode": "SIMPLE", "insecureSkipVerify": true},
				"connectionPool": map[string]any{"http": map[string]any{"http2MaxRequests": int64(1000)}},
			}, "spec", "trafficPolicy")
		},
	}, {
		name: "active-active: three replicas without leader election, sharing in-flight through redis", release: "aa", namespace: "inference",
		args: []string{
			"--set", "inferenceExtension.replicas=3",
			"--set", "inferenceExtension.activeActive.enabled=true",
			"--set", "inferenceExtension.activeActive.redis=redis.inference.svc:6379",
		},
		want: []string{"ConfigMap/aa-epp", "Deployment/aa-epp", "InferencePool/aa", "Role/aa-epp", "RoleBinding/aa-epp",
			"Service/aa-epp", "ServiceAccount/aa-epp"},
		check: func(t *testing.T, r rendered) {
			dep := r.get(t, "Deployment", "aa-epp")
			wantField(t, dep, int64(3), "spec", "replicas")
			c := container(t, dep)
			args, _, _ := unstructured.NestedStringSlice(c, "args")
			if slices.Contains(args, "--ha-enable-leader-election") {
				t.Errorf("active-active replicas elect a leader: %v", args)
			}
			for _, want := range [][2]string{{"--peer-load-redis", "redis.inference.svc:6379"}, {"--replica-id", "$(POD_NAME)"}} {
				if i := slices.Index(args, want[0]); i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
					t.Errorf("args %v lack %s %s", args, want[0], want[1])
				}
			}
			env, _, _ := unstructured.NestedSlice(c, "env")
			if len(env) == 0 || env[0].(map[string]any)["name"] != "POD_NAME" {
				t.Errorf("no POD_NAME from the downward API: %v", env)
			}
		},
	}, {
		name: "gke, named pool, existing service account, custom values file", release: "r1", namespace: "models",
		args: []string{
			"--set", "provider.name=gke",
			"--set", "inferencePool.name=gemma",
			"--set", "inferencePool.appProtocol=kubernetes.io/h2c",
			"--set-json", `inferencePool.targetPorts=[{"number":8200},{"number":8201}]`,
			"--set", "inferenceExtension.serviceAccount.create=false",
			"--set", "inferenceExtension.serviceAccount.name=existing-sa",
			"--values", filepath.Join("testdata", "values-custom.yaml"),
		},
		want: []string{"ConfigMap/gemma-epp", "Deployment/gemma-epp", "GCPBackendPolicy/gemma", "HealthCheckPolicy/gemma",
			"InferencePool/gemma", "Service/gemma-epp"},
		check: func(t *testing.T, r rendered) {
			pool := r.get(t, "InferencePool", "gemma")
			wantField(t, pool, "kubernetes.io/h2c", "spec", "appProtocol")
			wantField(t, pool, "FailClose", "spec", "endpointPickerRef", "failureMode")
			wantField(t, pool, "gemma-epp", "spec", "endpointPickerRef", "name")

			dep := r.get(t, "Deployment", "gemma-epp")
			wantField(t, dep, "existing-sa", "spec", "template", "spec", "serviceAccountName")
			c := container(t, dep)
			wantField(t, c, "registry.example.com/igw@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image")
			args, _, _ := unstructured.NestedStringSlice(c, "args")
			if slices.Contains(args, "--ha-enable-leader-election") {
				t.Errorf("one replica, yet args %v turn on leader election", args)
			}
			for _, want := range []string{"--pool-name", "gemma", "--pool-namespace", "models", "--log-level", "debug", "--drain-timeout", "25s"} {
				if !slices.Contains(args, want) {
					t.Errorf("args %v lack %q", args, want)
				}
			}

			if epc := pickerConfig(t, r, "gemma-epp"); !strings.Contains(fmt.Sprint(epc), "lora-affinity-scorer") {
				t.Errorf("the values file's EndpointPickerConfig is not in the ConfigMap: %v", epc)
			}
			for _, kind := range []string{"GCPBackendPolicy", "HealthCheckPolicy"} {
				wantField(t, r.get(t, kind, "gemma"), map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "gemma"},
					"spec", "targetRef")
			}
			wantField(t, r.get(t, "HealthCheckPolicy", "gemma"), int64(8200), "spec", "default", "config", "httpHealthCheck", "port")
			wantField(t, r.get(t, "GCPBackendPolicy", "gemma"), int64(600), "spec", "default", "timeoutSec")
		},
	}}
}

// startAPIServer starts kube-apiserver and etcd with igw's CRDs and the
// test's provider CRDs installed, and readies helm and kubectl for it.
func startAPIServer(t *testing.T) *tools {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make chart-test`, which builds kube-apiserver and installs etcd")
	}
	tl := &tools{
		root:    root,
		chart:   filepath.Join(root, "config", "charts", "inferencepool"),
		helmBin: binary(t, "HELM", filepath.Join(root, "bin", "helm")),
		kubectl: binary(t, "KUBECTL", filepath.Join(root, "bin", "kubectl")),
		igw:     binary(t, "IGW", filepath.Join(root, "bin", "igw")),
	}
	// Gateway API's standard CRDs come with the sigs.k8s.io/gateway-api
	// module igw builds with (the gateway chart's GatewayClass needs them).
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	list.Dir = root
	gwDir, err := list.Output()
	if err != nil || strings.TrimSpace(string(gwDir)) == "" {
		t.Fatalf("go list -m sigs.k8s.io/gateway-api in %s: %v", root, err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join("testdata", "crds"),
			filepath.Join(root, "config", "crd", "llm-d"), filepath.Join(root, "config", "crd", "aigateway"),
			filepath.Join(strings.TrimSpace(string(gwDir)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})
	dir := t.TempDir()
	tl.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(tl.kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	tl.kubeCache = filepath.Join(dir, "kube-cache")
	tl.helmEnv = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(dir, "helm", "data"),
		"KUBECONFIG="+filepath.Join(dir, "no-kubeconfig"), // helm template and lint must not need a cluster
	)
	return tl
}

func binary(t *testing.T, envName, fallback string) string {
	t.Helper()
	p := os.Getenv(envName)
	if p == "" {
		p = fallback
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (run `make chart-test`, which builds it)", envName, err)
	}
	return p
}

// helm runs bin/helm and returns its stdout and stderr together.
func (tl *tools) helm(args ...string) (string, error) {
	cmd := exec.Command(tl.helmBin, args...)
	cmd.Env = tl.helmEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// render runs helm template and decodes every document.
func (tl *tools) render(t *testing.T, release, namespace string, args []string) rendered {
	t.Helper()
	cmd := exec.Command(tl.helmBin, append([]string{"template", release, tl.chart, "--namespace", namespace}, args...)...)
	cmd.Env = tl.helmEnv
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	r := rendered{text: stdout.String()}
	dec := yamlutil.NewYAMLOrJSONDecoder(strings.NewReader(r.text), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template %v rendered invalid YAML: %v\n%s", args, err, r.text)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil { // numbers as int64, as the API server reads them
			t.Fatalf("helm template %v rendered an object without apiVersion/kind: %v\n%s", args, err, raw)
		}
		r.objs = append(r.objs, obj)
	}
	return r
}

// dryRunApply is `kubectl apply --server-side --dry-run=server` of the
// manifests; it returns kubectl's stdout and stderr together.
func (tl *tools) dryRunApply(manifests string, extra ...string) (string, error) {
	args := append([]string{"--kubeconfig", tl.kubeconfig, "--cache-dir", tl.kubeCache,
		"apply", "--server-side", "--dry-run=server", "--field-manager", fieldManager, "-f", "-"}, extra...)
	cmd := exec.Command(tl.kubectl, args...)
	cmd.Stdin = strings.NewReader(manifests)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl apply: %w", err)
	}
	return string(out), nil
}

func (tl *tools) mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tl.kubectl, append([]string{"--kubeconfig", tl.kubeconfig, "--cache-dir", tl.kubeCache}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String() // without "No resources found" and other notes on stderr
}

func (r rendered) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s/%s rendered", kind, name)
	return nil
}

func kindNames(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// expectedApplied is what kubectl prints for each object a server-side dry
// run accepted: "<kind>[.<group>]/<name> serverside-applied (server dry run)".
func expectedApplied(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		res := strings.ToLower(o.GetKind())
		if g := o.GroupVersionKind().Group; g != "" {
			res += "." + g
		}
		out = append(out, res+"/"+o.GetName()+" serverside-applied (server dry run)")
	}
	sort.Strings(out)
	return out
}

func appliedLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	sort.Strings(lines)
	return lines
}

func container(t *testing.T, dep *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", dep.GetName(), len(cs))
	}
	return cs[0].(map[string]any)
}

// pickerConfig decodes the EndpointPickerConfig the Deployment mounts from
// the ConfigMap at the path its --config-file flag names.
func pickerConfig(t *testing.T, r rendered, name string) map[string]any {
	t.Helper()
	_, data := configFile(t, r, name)
	var epc map[string]any
	if err := yaml.Unmarshal([]byte(data), &epc); err != nil {
		t.Fatalf("the EndpointPickerConfig of %s: %v", name, err)
	}
	return epc
}

// configFile returns the path the Deployment's --config-file flag names and
// the content the pod sees there, from the ConfigMap volume mounted at it.
func configFile(t *testing.T, r rendered, name string) (path, content string) {
	t.Helper()
	dep := r.get(t, "Deployment", name)
	c := container(t, dep)
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	i := slices.Index(args, "--config-file")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("args %v have no --config-file", args)
	}
	path = args[i+1]
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	volumes, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	for _, m := range mounts {
		mount := m.(map[string]any)
		dir := mount["mountPath"].(string)
		if filepath.Dir(path) != dir {
			continue
		}
		for _, v := range volumes {
			vol := v.(map[string]any)
			cm, ok := vol["configMap"].(map[string]any)
			if vol["name"] != mount["name"] || !ok {
				continue
			}
			for _, it := range cm["items"].([]any) {
				item := it.(map[string]any)
				if item["path"] != filepath.Base(path) {
					continue
				}
				data, found, _ := unstructured.NestedString(r.get(t, "ConfigMap", cm["name"].(string)).Object, "data", item["key"].(string))
				if !found {
					t.Fatalf("ConfigMap %s has no key %s", cm["name"], item["key"])
				}
				return path, data
			}
		}
	}
	t.Fatalf("%s is not mounted from a ConfigMap", path)
	return "", ""
}

func wantField(t *testing.T, obj any, want any, path ...string) {
	t.Helper()
	var m map[string]any
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		m = o.Object
	case map[string]any:
		m = o
	}
	got, found, err := unstructured.NestedFieldNoCopy(m, path...)
	if err != nil || !found {
		t.Errorf("%s: not found (%v)", strings.Join(path, "."), err)
		return
	}
	if gotYAML, wantYAML := toYAML(t, got), toYAML(t, want); gotYAML != wantYAML {
		t.Errorf("%s =\n%s\nwant\n%s", strings.Join(path, "."), gotYAML, wantYAML)
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkDocument holds a page to what it shows: every YAML manifest in it is
// applied with a server-side dry run (namespace default), every values file
// (a YAML block whose first line is "# values-….yaml") renders the chart and
// the rendering is dry-run applied, and every `helm install … ` command of
// its sh blocks renders with `helm template` and the same arguments.
func (tl *tools) checkDocument(t *testing.T, rel string) {
	text, err := os.ReadFile(filepath.Join(tl.root, rel))
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(string(text))
	var manifests, valuesFiles, installs int
	for i, b := range blocks {
		where := fmt.Sprintf("%s block %d (%s)", rel, i+1, b.lang)
		switch {
		case b.lang == "yaml" && strings.HasPrefix(b.body, "# values-"):
			valuesFiles++
			path := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(path, []byte(b.body), 0o600); err != nil {
				t.Fatal(err)
			}
			r := tl.render(t, "llama", "default", []string{"--values", path})
			if out, err := tl.dryRunApply(r.text); err != nil {
				t.Errorf("%s: the chart rendered with it is refused: %v\n%s", where, err, out)
			}
		case b.lang == "yaml":
			manifests++
			out, err := tl.dryRunApply(b.body, "--namespace", "default")
			if err != nil {
				t.Errorf("%s: %v\n%s", where, err, out)
				continue
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasSuffix(l, "serverside-applied (server dry run)") {
					t.Errorf("%s: kubectl said %q", where, l)
				}
			}
		case b.lang == "sh":
			for _, args := range helmInstalls(b.body) {
				installs++
				args[0] = "template" // helm install RELEASE CHART … → helm template RELEASE CHART …
				if len(args) >= 3 && args[2] == "config/charts/igw-gateway" {
					args[2] = filepath.Join(tl.root, "config", "charts", "igw-gateway")
					out, err := tl.helm(append(args, "--namespace", "default")...)
					if err != nil {
						t.Errorf("%s: helm %v: %v\n%s", where, args, err, out)
						continue
					}
					if out, err := tl.dryRunApply(out, "--namespace", "default"); err != nil {
						t.Errorf("%s: helm %v renders what the API server refuses: %v\n%s", where, args, err, out)
					}
					continue
				}
				if len(args) < 3 || args[2] != "config/charts/inferencepool" {
					t.Errorf("%s: helm install of %v, want the chart config/charts/inferencepool or igw-gateway", where, args)
					continue
				}
				args[2] = tl.chart
				r := tl.render(t, args[1], "default", args[3:])
				if out, err := tl.dryRunApply(r.text); err != nil {
					t.Errorf("%s: helm %v renders what the API server refuses: %v\n%s", where, args, err, out)
				}
			}
		}
	}
	t.Logf("%s: %d manifests, %d values files, %d helm install commands checked", rel, manifests, valuesFiles, installs)
	if manifests+valuesFiles+installs == 0 {
		t.Errorf("%s: nothing to check; has the page lost its examples?", rel)
	}
}

type fencedBlock struct{ lang, body string }

// fencedBlocks returns the Markdown code blocks fenced with ``` of a page.
func fencedBlocks(text string) []fencedBlock {
	var blocks []fencedBlock
	var cur *fencedBlock
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &fencedBlock{lang: strings.TrimPrefix(trimmed, "```")}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	return blocks
}

// helmInstalls returns the arguments after "helm" of every `helm install`
// command in a shell block, continuation lines joined, comments dropped.
func helmInstalls(sh string) [][]string {
	var cmds [][]string
	joined := strings.ReplaceAll(sh, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "helm" && fields[1] == "install" {
			cmds = append(cmds, fields[1:])
		}
	}
	return cmds
}

// checkGatewayChart lints and renders config/charts/igw-gateway (one
// replica, and several with leader election), dry-runs what it renders on
// the API server (with Gateway API's CRDs), and checks its schema refuses
// bad values.
func (tl *tools) checkGatewayChart(t *testing.T) {
	chart := filepath.Join(tl.root, "config", "charts", "igw-gateway")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"ClusterRole/igw-gateway-gateways", "ClusterRoleBinding/igw-gateway-gateways", "Deployment/igw-gateway",
			"GatewayClass/igw", "Service/igw-gateway", "ServiceAccount/igw-gateway"}},
		{[]string{"--set", "replicas=2", "--set-json", `modelHeaders=["X-Gateway-Model-Name","x-gateway-inference-model"]`},
			[]string{"ClusterRole/igw-gateway-gateways", "ClusterRoleBinding/igw-gateway-gateways", "Deployment/igw-gateway",
				"GatewayClass/igw", "Role/igw-gateway-leader-election", "RoleBinding/igw-gateway-leader-election", "Service/igw-gateway", "ServiceAccount/igw-gateway"}},
	} {
		if out, err := tl.helm(append([]string{"lint", "--strict", chart, "--namespace", "gateways"}, tc.args...)...); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", tc.args, err, out)
		}
		out, err := tl.helm(append([]string{"template", "igw-gateway", chart, "--namespace", "gateways"}, tc.args...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", tc.args, err, out)
		}
		var objs []*unstructured.Unstructured
		dec := yamlutil.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("helm template %v rendered invalid YAML: %v", tc.args, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, &u)
			}
		}
		if got := kindNames(objs); !slices.Equal(got, slices.Sorted(slices.Values(tc.want))) {
			t.Fatalf("%v: rendered %v, want %v", tc.args, got, tc.want)
		}
		r := rendered{text: out, objs: objs}
		if cargs, _ := container(t, r.get(t, "Deployment", "igw-gateway"))["args"].([]any); len(cargs) < 2 || cargs[0] != "serve" || cargs[1] != "--kubernetes" {
			t.Errorf("the container runs %v, want igw serve --kubernetes", cargs)
		}
		depText := out[strings.Index(out, "kind: Deployment"):]
		for _, want := range []string{"- --kubernetes", "- --gateway-address\n        - igw-gateway.gateways.svc.cluster.local", "- --model-header"} {
			if !strings.Contains(depText, want) {
				t.Errorf("%v: the Deployment lacks %q", tc.args, want)
			}
		}
		if len(tc.args) > 0 && (!strings.Contains(depText, "--ha-enable-leader-election") || !strings.Contains(depText, "x-gateway-inference-model")) {
			t.Errorf("%v: no leader election or second model header:\n%s", tc.args, depText)
		}
		if out, err := tl.dryRunApply(out, "--namespace", "gateways"); err != nil {
			t.Fatalf("%v: kubectl apply --server-side --dry-run=server: %v\n%s", tc.args, err, out)
		}
	}
	for _, bad := range [][]string{{"--set", "replicas=0"}, {"--set", "service.type=Ingress"}, {"--set", "gatewayClass.controllerName=no-slash"}, {"--set", "replica=2"}} {
		if out, err := tl.helm(append([]string{"template", "x", chart, "--namespace", "gateways"}, bad...)...); err == nil || !strings.Contains(out, "schema") {
			t.Errorf("helm template %v: %v, want a schema error:\n%s", bad, err, out)
		}
	}
}
