package telemetry

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSecurityMetrics(t *testing.T) {
	m := NewMetrics()
	m.TokenUsage("team-a", "llama", "chat", 120, 30)
	m.TokenUsage("team-a", "llama", "chat", 8, 0)
	m.AuthRejected("invalid_key")
	m.GuardHit("default/public", "max-messages", "block")
	if n := testutil.CollectAndCount(m.security.tokenUsage); n != 2 {
		t.Errorf("token usage series = %d, want 2 (input and output)", n)
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range families {
		if f.GetName() != GenAITokenUsage {
			continue
		}
		for _, mm := range f.GetMetric() {
			var labels []string
			for _, l := range mm.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			h := mm.GetHistogram()
			got[strings.Join(labels, ",")] = fmt.Sprintf("sum=%v count=%d", h.GetSampleSum(), h.GetSampleCount())
		}
	}
	want := map[string]string{
		"gen_ai_operation_name=chat,gen_ai_request_model=llama,gen_ai_token_type=input,tenant=team-a":  "sum=128 count=2",
		"gen_ai_operation_name=chat,gen_ai_request_model=llama,gen_ai_token_type=output,tenant=team-a": "sum=30 count=1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("token usage = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.security.authRejections.WithLabelValues("invalid_key")); got != 1 {
		t.Errorf("auth rejections = %v", got)
	}
	if got := testutil.ToFloat64(m.security.guardHits.WithLabelValues("default/public", "max-messages", "block")); got != 1 {
		t.Errorf("guard hits = %v", got)
	}
}
