package kube_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/kube"
)

func pod(name, ip string, ready corev1.ConditionStatus, labels map[string]string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Status: corev1.PodStatus{PodIP: ip}}
	if ready != "" {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: ready}}
	}
	return p
}

func TestServing_ReadyWithIPAndNotTerminating(t *testing.T) {
	terminating := pod("t", "127.0.1.1", corev1.ConditionTrue, nil)
	terminating.DeletionTimestamp = &metav1.Time{}
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"ready", pod("a", "127.0.1.1", corev1.ConditionTrue, nil), true},
		{"not ready", pod("a", "127.0.1.1", corev1.ConditionFalse, nil), false},
		{"readiness unknown", pod("a", "127.0.1.1", corev1.ConditionUnknown, nil), false},
		{"no ready condition yet", pod("a", "127.0.1.1", "", nil), false},
		{"no IP", pod("a", "", corev1.ConditionTrue, nil), false},
		{"terminating", terminating, false},
	} {
		if got := kube.Serving(&tc.pod); got != tc.want {
			t.Errorf("%s: Serving = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPodEndpoints_OnePerServingPodAndPort(t *testing.T) {
	pods := []corev1.Pod{
		pod("b", "::1", corev1.ConditionTrue, map[string]string{"app": "x", "inference.networking.k8s.io/engine-type": "sglang"}),
		pod("a", "127.0.1.1", corev1.ConditionTrue, map[string]string{"app": "x"}),
		pod("c", "127.0.1.3", corev1.ConditionFalse, map[string]string{"app": "x"}),
	}
	got := kube.PodEndpoints(pods, []v1.Port{{Number: 8000}, {Number: 8001}})
	want := []string{"a:8000 127.0.1.1:8000 vllm", "a:8001 127.0.1.1:8001 vllm", "b:8000 [::1]:8000 sglang", "b:8001 [::1]:8001 sglang"}
	var have []string
	for _, e := range got {
		have = append(have, e.Name+" "+e.Address+" "+string(e.Engine))
	}
	if strings.Join(have, "|") != strings.Join(want, "|") {
		t.Fatalf("endpoints\n%v\nwant\n%v", have, want)
	}
	got[0].Labels["app"] = "changed"
	if pods[1].Labels["app"] != "x" {
		t.Error("endpoint labels share the pod's map")
	}
	if e := got[2]; e.Engine != datastore.EngineSGLang {
		t.Errorf("engine %s", e.Engine)
	}
}

func TestAdapterEntryOf_ReadsTheConfigMapKeys(t *testing.T) {
	cm := func(data map[string]string) *corev1.ConfigMap { return &corev1.ConfigMap{Data: data} }
	e, err := kube.AdapterEntryOf(cm(map[string]string{"baseModel": " base ", "adapters": "- a1\n- a2\n"}))
	if err != nil || e.BaseModel != "base" || strings.Join(e.Adapters, ",") != "a1,a2" {
		t.Fatalf("block list: %+v %v", e, err)
	}
	if e, err = kube.AdapterEntryOf(cm(map[string]string{"baseModel": "base", "adapters": "[a1, a2]"})); err != nil || len(e.Adapters) != 2 {
		t.Fatalf("flow list: %+v %v", e, err)
	}
	if e, err = kube.AdapterEntryOf(cm(map[string]string{"baseModel": "base"})); err != nil || len(e.Adapters) != 0 {
		t.Fatalf("no adapters: %+v %v", e, err)
	}
	for _, bad := range []map[string]string{
		{"adapters": "[a1]"},
		{"baseModel": "base", "adapters": "a1: x"},
		{"baseModel": "base", "extra": "x"},
	} {
		if _, err := kube.AdapterEntryOf(cm(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// BenchmarkPodEndpoints_100Pods2Ports is the work of one endpoints
// reconcile after the cache list: 100 pods, 2 target ports.
func BenchmarkPodEndpoints_100Pods2Ports(b *testing.B) {
	pods := make([]corev1.Pod, 100)
	for i := range pods {
		pods[i] = pod(fmt.Sprintf("vllm-%03d", i), fmt.Sprintf("127.0.3.%d", i+1), corev1.ConditionTrue, map[string]string{"app": "x"})
	}
	ports := []v1.Port{{Number: 8000}, {Number: 8001}}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(kube.PodEndpoints(pods, ports)); n != 200 {
			b.Fatal(n)
		}
	}
}
