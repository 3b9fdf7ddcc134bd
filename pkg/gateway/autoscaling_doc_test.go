package gateway

import (
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestAutoscalingDoc_SeriesExistOnAFreshGateway reads every series
// selector docs/autoscaling.md builds on (prometheus-adapter seriesQuery
// rules and KEDA queries) and checks that a gateway that has served no
// request yet exports a series each selects: an autoscaler set up before
// the first burst must not find "no data".
func TestAutoscalingDoc_SeriesExistOnAFreshGateway(t *testing.T) {
	doc, err := os.ReadFile("../../docs/autoscaling.md")
	if err != nil {
		t.Fatal(err)
	}
	var selectors []string
	for _, m := range regexp.MustCompile(`(?m)seriesQuery: '([^']+)'`).FindAllStringSubmatch(string(doc), -1) {
		selectors = append(selectors, m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+query: (.+)$`).FindAllStringSubmatch(string(doc), -1) {
		selectors = append(selectors, regexp.MustCompile(`igw_\w+\{[^}]*\}`).FindAllString(m[1], -1)...)
	}
	if len(selectors) < 4 {
		t.Fatalf("found only %d selectors in docs/autoscaling.md: %q", len(selectors), selectors)
	}
	a := newFakeServer(t)
	s := startGateway(t, parseConfig(t, poolYAML("llama", a.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: llama}]\n")), Options{})
	fams := scrape(t, newClient(t), s)
	for _, sel := range selectors {
		if !selects(t, sel, fams) {
			t.Errorf("no series for %s on a fresh gateway", sel)
		}
	}
}

// selects reports whether a PromQL series selector (name{label op "v", ...}
// with =, !=, =~, !~; __name__ allowed) matches a series of fams.
func selects(t *testing.T, sel string, fams map[string]*dto.MetricFamily) bool {
	t.Helper()
	m := regexp.MustCompile(`^(\w*)\{(.*)\}$`).FindStringSubmatch(sel)
	if m == nil {
		t.Fatalf("cannot read selector %s", sel)
	}
	type matcher struct {
		label, op string
		re        *regexp.Regexp
	}
	var ms []matcher
	if m[1] != "" {
		ms = append(ms, matcher{"__name__", "=", regexp.MustCompile("^" + regexp.QuoteMeta(m[1]) + "$")})
	}
	for _, c := range regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`).FindAllStringSubmatch(m[2], -1) {
		v := c[3]
		if c[2] == "=" || c[2] == "!=" {
			v = regexp.QuoteMeta(v)
		}
		ms = append(ms, matcher{c[1], c[2], regexp.MustCompile("^(?:" + v + ")$")})
	}
	for name, f := range fams {
		for _, series := range f.GetMetric() {
			labels := map[string]string{"__name__": name}
			for _, l := range series.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			ok := true
			for _, mt := range ms {
				match := mt.re.MatchString(labels[mt.label])
				if strings.HasPrefix(mt.op, "!") == match {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}
