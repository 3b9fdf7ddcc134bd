package static

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/datastore"
)

func server(ns, name, addr string, labels map[string]string, ports ...v1.PortNumber) *ModelServer {
	s := &ModelServer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	s.Spec.Address = addr
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, v1.Port{Number: p})
	}
	return s
}

func pool(ns, name string, selector map[string]string, ports ...v1.PortNumber) *v1.InferencePool {
	p := &v1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	p.Spec.Selector.MatchLabels = selector
	for _, n := range ports {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, v1.Port{Number: n})
	}
	return p
}

func addresses(eps []Endpoint) []string {
	var out []string
	for _, ep := range eps {
		out = append(out, ep.Address)
	}
	return out
}

func TestResolveEndpoints_SelectsLikePods(t *testing.T) {
	llama := map[string]string{"app": "llama"}
	servers := []*ModelServer{
		server("default", "a", "10.0.0.1", map[string]string{"app": "llama", "zone": "x"}),
		server("default", "b", "10.0.0.2", map[string]string{"app": "llama"}),
		server("default", "c", "10.0.0.3", map[string]string{"app": "qwen"}),
		server("prod", "d", "10.0.0.4", map[string]string{"app": "llama"}),
		server("", "e", "10.0.0.5", map[string]string{"app": "llama", "zone": "y"}),
		server("default", "f", "10.0.0.6", map[string]string{"zone": "x"}),
	}
	tests := []struct {
		name string
		pool *v1.InferencePool
		want []string
	}{
		{"selector and namespace, every target port", pool("default", "p", llama, 8000, 8001),
			[]string{"10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.2:8000", "10.0.0.2:8001", "10.0.0.5:8000", "10.0.0.5:8001"}},
		{"all selector labels must match", pool("default", "p", map[string]string{"app": "llama", "zone": "x"}, 8000),
			[]string{"10.0.0.1:8000"}},
		{"empty namespace is default", pool("", "p", map[string]string{"zone": "y"}, 8000),
			[]string{"10.0.0.5:8000"}},
		{"other namespace", pool("prod", "p", llama, 9000),
			[]string{"10.0.0.4:9000"}},
		{"no match", pool("default", "p", map[string]string{"app": "mistral"}, 8000), nil},
		{"empty selector selects nothing", pool("default", "p", nil, 8000), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := addresses(ResolveEndpoints(tc.pool, servers)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("endpoints = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolveEndpoints_ServerPortsLimitTargetPorts(t *testing.T) {
	l := map[string]string{"app": "llama"}
	servers := []*ModelServer{
		server("default", "s1", "127.0.0.1", l, 8001),
		server("default", "s2", "127.0.0.1", l, 8002, 9999),
		server("default", "s3", "127.0.0.2", l),
	}
	got := addresses(ResolveEndpoints(pool("default", "p", l, 8001, 8002), servers))
	want := []string{"127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.2:8001", "127.0.0.2:8002"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
}

func TestResolveEndpoints_EndpointFields(t *testing.T) {
	labels := map[string]string{"app": "llama", datastore.EngineTypeLabel: "sglang"}
	s := server("ml", "gpu-0", "fd00::1", labels)
	eps := ResolveEndpoints(pool("ml", "llama", map[string]string{"app": "llama"}, 8000), []*ModelServer{s})
	want := Endpoint{
		Name: "gpu-0:8000", Address: "[fd00::1]:8000", Pool: "ml/llama", Server: "gpu-0",
		Port: 8000, Labels: labels, Engine: datastore.EngineSGLang,
	}
	if len(eps) != 1 || !reflect.DeepEqual(eps[0], want) {
		t.Fatalf("endpoints = %+v, want [%+v]", eps, want)
	}
	eps[0].Labels["app"] = "changed"
	if s.Labels["app"] != "llama" {
		t.Error("endpoint labels alias the server's labels")
	}
	s.Spec.Engine = datastore.EngineTRTLLMServe
	if got := ResolveEndpoints(pool("ml", "llama", map[string]string{"app": "llama"}, 8000), []*ModelServer{s})[0].Engine; got != datastore.EngineTRTLLMServe {
		t.Errorf("spec.engine must win over the label, got %s", got)
	}
}

// TestResolveEndpoints_KVEventsPortPerServerPort: spec.kvEventsPort
// becomes the endpoints' igw.dev/kv-events-port label, one port up for
// each further port of the server, as `igw sim --replicas` lays them out.
func TestResolveEndpoints_KVEventsPortPerServerPort(t *testing.T) {
	l := map[string]string{"app": "llama"}
	s := server("default", "sim", "127.0.0.1", l, 8001, 8002, 8003)
	s.Spec.KVEventsPort = 5557
	eps := ResolveEndpoints(pool("default", "p", l, 8001, 8003), []*ModelServer{s})
	var got []string
	for _, ep := range eps {
		got = append(got, ep.Labels[datastore.KVEventsPortLabel])
	}
	if want := []string{"5557", "5558"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kv-events ports %v, want %v", got, want)
	}
	if _, ok := s.Labels[datastore.KVEventsPortLabel]; ok {
		t.Error("the server's own labels were modified")
	}
	plain := server("default", "plain", "127.0.0.2", l)
	if eps := ResolveEndpoints(pool("default", "p", l, 8001), []*ModelServer{plain}); eps[0].Labels[datastore.KVEventsPortLabel] != "" {
		t.Error("a server without kvEventsPort got the label")
	}
}
