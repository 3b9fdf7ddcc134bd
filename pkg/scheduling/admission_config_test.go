package scheduling

import (
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/flowcontrol"
)

const admissionHeader = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"

func TestAdmissionSectionsOverrideDefaults(t *testing.T) {
	raw := admissionHeader + `saturationDetector:
  queueDepthThreshold: 2
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 500ms
  reservedSlots: 2
flowControl:
  maxRequestsPerBand: 10
  maxBytesPerBand: 4096
  ttl: 3s
`
	sat, flow, err := AdmissionFromYAML([]byte(raw), flowcontrol.DefaultSaturationConfig())
	if err != nil {
		t.Fatal(err)
	}
	if want := (flowcontrol.SaturationConfig{QueueDepthThreshold: 2, KVCacheUtilThreshold: 0.9, MetricsStalenessThreshold: 500 * time.Millisecond, ReservedSlots: 2}); sat != want {
		t.Errorf("saturation = %+v, want %+v", sat, want)
	}
	want := flowcontrol.DefaultConfig()
	want.MaxRequestsPerBand, want.MaxBytesPerBand, want.TTL = 10, 4096, 3*time.Second
	if flow != want {
		t.Errorf("flow control = %+v, want %+v", flow, want)
	}
}

func TestAdmissionDefaultsWhenAbsent(t *testing.T) {
	base := flowcontrol.DefaultSaturationConfig()
	base.MetricsStalenessThreshold = time.Second // e.g. igw epp --metrics-max-age
	for _, raw := range []string{"", admissionHeader, admissionHeader + "saturationDetector: {queueDepthThreshold: 7}\n"} {
		sat, flow, err := AdmissionFromYAML([]byte(raw), base)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if sat.MetricsStalenessThreshold != time.Second || sat.KVCacheUtilThreshold != 0.8 {
			t.Errorf("%q: saturation = %+v, want the base's unset fields", raw, sat)
		}
		if flow != flowcontrol.DefaultConfig() {
			t.Errorf("%q: flow control = %+v, want defaults", raw, flow)
		}
	}
}

func TestAdmissionSectionsRejectBadValuesNamingTheField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"saturationDetector: {queueDepthThreshold: -1}", "saturationDetector.queueDepthThreshold"},
		{"saturationDetector: {kvCacheUtilThreshold: 1.5}", "saturationDetector.kvCacheUtilThreshold"},
		{"saturationDetector: {metricsStalenessThreshold: soon}", "saturationDetector.metricsStalenessThreshold"},
		{"saturationDetector: {metricsStalenessThreshold: -1s}", "saturationDetector.metricsStalenessThreshold"},
		{"saturationDetector: {reservedSlots: -1}", "saturationDetector.reservedSlots"},
		{"saturationDetector: {queueDepth: 3}", "saturationDetector.queueDepth"},
		{"flowControl: {maxRequestsPerBand: 0}", "flowControl.maxRequestsPerBand"},
		{"flowControl: {maxBytesPerBand: -5}", "flowControl.maxBytesPerBand"},
		{"flowControl: {ttl: 0s}", "flowControl.ttl"},
		{"flowControl: {ttl: 60}", "flowControl.ttl"},
		{"flowControl: {TTL: 5s}", "flowControl.TTL"},
	} {
		_, err := ParseEndpointPickerConfig([]byte(admissionHeader + tc.doc + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.doc, err, tc.want)
		}
	}
}
