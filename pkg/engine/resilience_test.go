package engine

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/director"
)

func annotatedPool(a map[string]string) *v1.InferencePool {
	return &v1.InferencePool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: a}}
}

func TestResilienceOf_AnnotationsOverrideDefaults(t *testing.T) {
	r, err := resilienceOf(annotatedPool(nil))
	if err != nil || r != director.DefaultResilience() {
		t.Fatalf("no annotations: %+v, %v; want the defaults", r, err)
	}
	r, err = resilienceOf(annotatedPool(map[string]string{
		AnnotationOutlierConsecutiveFailures: "3",
		AnnotationOutlierBaseEjectionTime:    "2s",
		AnnotationOutlierMaxEjectionTime:     "1m",
		AnnotationOutlierMaxEjectionPercent:  "25",
		AnnotationRetryBudgetPercent:         "10",
		AnnotationRetryBudgetMinRetries:      "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	o, b := r.Outlier, r.RetryBudget
	if o.ConsecutiveFailures != 3 || o.BaseEjectionTime != 2*time.Second || o.MaxEjectionTime != time.Minute ||
		o.MaxEjectionPercent != 25 || b.Percent != 10 || b.MinRetries != 1 {
		t.Fatalf("got %+v", r)
	}
	// A base over the default cap raises the cap with it.
	r, err = resilienceOf(annotatedPool(map[string]string{AnnotationOutlierBaseEjectionTime: "10m"}))
	if err != nil || r.Outlier.MaxEjectionTime != 10*time.Minute {
		t.Fatalf("base 10m: %+v, %v", r.Outlier, err)
	}
}

func TestResilienceOf_BadValuesNameTheAnnotation(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{AnnotationOutlierConsecutiveFailures, "-1", "an integer"},
		{AnnotationOutlierConsecutiveFailures, "five", "an integer"},
		{AnnotationOutlierMaxEjectionPercent, "150", "an integer 0..100"},
		{AnnotationRetryBudgetPercent, "101", "an integer 0..100"},
		{AnnotationRetryBudgetMinRetries, "x", "an integer"},
		{AnnotationOutlierBaseEjectionTime, "0s", "a positive duration"},
		{AnnotationOutlierMaxEjectionTime, "soon", "a positive duration"},
	} {
		_, err := resilienceOf(annotatedPool(map[string]string{tc.key: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v; want an error naming the annotation and %q", tc.key, tc.value, err, tc.want)
		}
	}
	_, err := resilienceOf(annotatedPool(map[string]string{
		AnnotationOutlierBaseEjectionTime: "1m", AnnotationOutlierMaxEjectionTime: "10s"}))
	if err == nil || !strings.Contains(err.Error(), "max ejection time") {
		t.Errorf("max below base: %v; want an error", err)
	}
}
