package v1alpha2

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func ptr[T any](v T) *T { return &v }

func sampleRewrite() *InferenceModelRewrite {
	return &InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Name: "canary"},
		Spec: InferenceModelRewriteSpec{
			PoolRef: PoolObjectReference{Group: PoolGroup, Kind: PoolKind, Name: "llama"},
			Rules: []InferenceModelRewriteRule{{
				Matches: []Match{{Model: ModelMatch{Type: MatchExact, Value: "llama"}}},
				Targets: []TargetModel{{ModelRewrite: "llama-v1", Weight: ptr[int32](90)}, {ModelRewrite: "llama-v2", Weight: ptr[int32](10)}},
			}},
		},
		Status: InferenceModelRewriteStatus{Conditions: []metav1.Condition{{Type: ConditionAccepted}}},
	}
}

func sampleObjective() *InferenceObjective {
	return &InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Name: "critical"},
		Spec:       InferenceObjectiveSpec{Priority: ptr[int32](10), PoolRef: PoolObjectReference{Name: "llama"}},
		Status:     InferenceObjectiveStatus{Conditions: []metav1.Condition{{Type: ConditionAccepted}}},
	}
}

func TestDeepCopy_IsIndependent(t *testing.T) {
	rw := sampleRewrite()
	c := rw.DeepCopyObject().(*InferenceModelRewrite)
	*c.Spec.Rules[0].Targets[0].Weight = 1
	c.Spec.Rules[0].Matches[0].Model.Value = "x"
	c.Status.Conditions[0].Type = "x"
	if !reflect.DeepEqual(rw, sampleRewrite()) {
		t.Fatal("mutating the rewrite copy changed the original")
	}
	obj := sampleObjective()
	oc := obj.DeepCopyObject().(*InferenceObjective)
	*oc.Spec.Priority = -1
	oc.Status.Conditions[0].Type = "x"
	if !reflect.DeepEqual(obj, sampleObjective()) {
		t.Fatal("mutating the objective copy changed the original")
	}
	ol := (&InferenceObjectiveList{Items: []InferenceObjective{*obj}}).DeepCopyObject().(*InferenceObjectiveList)
	*ol.Items[0].Spec.Priority = 3
	rl := (&InferenceModelRewriteList{Items: []InferenceModelRewrite{*rw}}).DeepCopyObject().(*InferenceModelRewriteList)
	rl.Items[0].Spec.Rules[0].Targets[0].ModelRewrite = "y"
	if *obj.Spec.Priority != 10 || rw.Spec.Rules[0].Targets[0].ModelRewrite != "llama-v1" {
		t.Fatal("list copies share items")
	}
}

func TestJSONFieldNames(t *testing.T) {
	for _, tc := range []struct {
		obj  any
		want []string
	}{
		{sampleRewrite(), []string{`"poolRef":{"group":"inference.networking.k8s.io","kind":"InferencePool","name":"llama"}`, `"rules":[{"matches":[{"model":{"type":"Exact","value":"llama"}}]`, `"targets":[{"modelRewrite":"llama-v1","weight":90}`}},
		{sampleObjective(), []string{`"spec":{"priority":10,"poolRef":{"name":"llama"}}`}},
	} {
		b, err := json.Marshal(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s\n lacks %s", b, w)
			}
		}
	}
}

func TestEffectivePriority_UnsetIsZero(t *testing.T) {
	if got := (&InferenceObjectiveSpec{}).EffectivePriority(); got != 0 {
		t.Errorf("unset = %d", got)
	}
	if got := (&InferenceObjectiveSpec{Priority: ptr[int32](-2)}).EffectivePriority(); got != -2 {
		t.Errorf("set = %d", got)
	}
}

func TestAddToScheme_RegistersKinds(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []runtime.Object{&InferenceObjective{}, &InferenceObjectiveList{}, &InferenceModelRewrite{}, &InferenceModelRewriteList{}} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) != 1 || gvks[0].GroupVersion() != GroupVersion {
			t.Errorf("ObjectKinds(%T) = %v, %v", obj, gvks, err)
		}
	}
}
