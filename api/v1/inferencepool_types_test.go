package v1

import (
	"encoding/json"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func samplePool() *InferencePool {
	g := Group("")
	return &InferencePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "InferencePool"},
		ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: "default", Labels: map[string]string{"a": "b"}},
		Spec: InferencePoolSpec{
			Selector:    LabelSelector{MatchLabels: map[string]string{"app": "llama"}},
			TargetPorts: []Port{{Number: 8000}, {Number: 8001}},
			AppProtocol: AppProtocolHTTP,
			EndpointPickerRef: &EndpointPickerRef{
				Group: &g, Kind: "Service", Name: "epp",
				Port: &Port{Number: 9002}, FailureMode: EndpointPickerFailOpen,
			},
		},
		Status: InferencePoolStatus{Parents: []ParentStatus{{
			ParentRef:      ParentReference{Name: "gw"},
			ControllerName: "igw.dev/controller",
			Conditions:     []metav1.Condition{{Type: string(InferencePoolConditionAccepted), Status: metav1.ConditionTrue}},
		}}},
	}
}

func TestInferencePool_DeepCopyIsIndependent(t *testing.T) {
	orig := samplePool()
	cp := orig.DeepCopy()
	if !reflect.DeepEqual(orig, cp) {
		t.Fatalf("copy differs:\n%#v\n%#v", orig, cp)
	}
	cp.Spec.Selector.MatchLabels["app"] = "changed"
	cp.Spec.TargetPorts[0].Number = 1
	cp.Spec.EndpointPickerRef.Port.Number = 1
	*cp.Spec.EndpointPickerRef.Group = "x"
	cp.Status.Parents[0].Conditions[0].Type = "x"
	cp.Labels["a"] = "x"
	if !reflect.DeepEqual(orig, samplePool()) {
		t.Fatalf("mutating the copy changed the original: %#v", orig)
	}
	list := &InferencePoolList{Items: []InferencePool{*orig}}
	lc := list.DeepCopyObject().(*InferencePoolList)
	lc.Items[0].Spec.TargetPorts[1].Number = 2
	if list.Items[0].Spec.TargetPorts[1].Number != 8001 {
		t.Fatal("list copy shares items")
	}
	var nilPool *InferencePool
	if nilPool.DeepCopy() != nil {
		t.Fatal("nil DeepCopy must be nil")
	}
}

func TestInferencePool_JSONFieldNames(t *testing.T) {
	b, err := json.Marshal(samplePool())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	for _, k := range []string{"selector", "targetPorts", "appProtocol", "endpointPickerRef"} {
		if _, ok := spec[k]; !ok {
			t.Errorf("spec lacks %q: %s", k, b)
		}
	}
	epp := spec["endpointPickerRef"].(map[string]any)
	for _, k := range []string{"group", "kind", "name", "port", "failureMode"} {
		if _, ok := epp[k]; !ok {
			t.Errorf("endpointPickerRef lacks %q: %s", k, b)
		}
	}
	if m["apiVersion"] != "inference.networking.k8s.io/v1" || m["kind"] != "InferencePool" {
		t.Errorf("type meta = %v %v", m["apiVersion"], m["kind"])
	}
	parent := m["status"].(map[string]any)["parents"].([]any)[0].(map[string]any)
	for _, k := range []string{"parentRef", "controllerName", "conditions"} {
		if _, ok := parent[k]; !ok {
			t.Errorf("status.parents[0] lacks %q: %s", k, b)
		}
	}
}

func TestAddToScheme_RegistersPoolKinds(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []runtime.Object{&InferencePool{}, &InferencePoolList{}} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) != 1 || gvks[0].GroupVersion() != GroupVersion {
			t.Errorf("ObjectKinds(%T) = %v, %v", obj, gvks, err)
		}
	}
	if got := Resource("inferencepools").String(); got != "inferencepools.inference.networking.k8s.io" {
		t.Errorf("Resource = %q", got)
	}
}
