package static

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/datastore"
)

// KindModelServer is the kind of a ModelServer document.
const KindModelServer = "ModelServer"

// ModelServer (kind ModelServer, igw.dev/v1alpha1) is a statically known
// model-server instance: it stands in for a pod when igw runs without
// Kubernetes. An InferencePool selects ModelServers exactly as it selects
// pods: by metadata.labels, in its own namespace, and each selected server
// contributes one endpoint (spec.address:port) per target port of the pool.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: ModelServer
//	metadata:
//	  name: llama-0
//	  namespace: default          # default "default"
//	  labels: {app: llama}
//	spec:
//	  address: 127.0.0.1          # IP or host name, no port
//	  ports: [{number: 8001}]     # optional: only these target ports
//	  engine: vllm                # vllm | sglang | trtllm-serve | triton-tensorrt-llm
type ModelServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says where the server is and what it runs.
	Spec ModelServerSpec `json:"spec,omitempty"`
}

// ModelServerSpec says where a model server is and what it runs.
type ModelServerSpec struct {
	// Address is the server's IP address or host name, without a port: the
	// port comes from the selecting pool's targetPorts, as a pod's does.
	Address string `json:"address"`

	// Ports, when set, are the only ports this server listens on: of a
	// selecting pool's targetPorts, only those listed here become
	// endpoints. Unset, every target port does (as for a pod). This lets
	// several servers share one address (e.g. 127.0.0.1) on different
	// ports and still be selected by one pool.
	Ports []v1.Port `json:"ports,omitempty"`

	// Engine is the model-server implementation, which decides the metric
	// names igw scrapes. Unset, the label
	// inference.networking.k8s.io/engine-type is used, and without that
	// label "vllm". After Parse it is always set.
	Engine datastore.Engine `json:"engine,omitempty"`

	// KVEventsPort is the port the server publishes its KV-cache events on
	// (vLLM's --kv-events-config endpoint, e.g. 5557), which precise
	// prefix-cache routing subscribes to. A server with several of the
	// pool's target ports publishes on KVEventsPort plus the port's index
	// among them, as `igw sim --replicas` does. Unset, the label
	// igw.dev/kv-events-port (or igw.dev/kv-events-endpoint) is used, and
	// without those vLLM's default 5557.
	KVEventsPort int32 `json:"kvEventsPort,omitempty"`
}

// listensOn reports whether the server serves port: always when it lists
// no ports, as a pod serves any target port.
func (s *ModelServer) listensOn(port v1.PortNumber) bool {
	if len(s.Spec.Ports) == 0 {
		return true
	}
	for _, p := range s.Spec.Ports {
		if p.Number == port {
			return true
		}
	}
	return false
}
