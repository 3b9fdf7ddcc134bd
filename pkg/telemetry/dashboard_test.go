package telemetry

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// TestDashboard_BoundedAndComputed: per-replica share and prefix-hit rate
// come from completed requests; objectives a client makes up fold into
// "other" past the bound; percentiles are over the latest samples only;
// an endpoint that left its pool is forgotten; decisions are a bounded
// ring of copies.
func TestDashboard_BoundedAndComputed(t *testing.T) {
	m := NewMetrics()
	store := datastore.NewStore(nil)
	store.SetPool("ns/p", []datastore.EndpointSpec{{Name: "a", Address: "10.0.0.1:8000"}, {Name: "b", Address: "10.0.0.2:8000"}})
	done := func(ep, objective string, took time.Duration, in, cached int) {
		m.RequestDone(&director.Completion{Pool: "ns/p", Endpoint: ep, Objective: objective, Status: http.StatusOK,
			Took: took, TTFT: took / 2, HasUsage: true, InputTokens: in, CachedTokens: cached})
	}
	for range 3 {
		done("10.0.0.1:8000", "", time.Second, 100, 50)
	}
	done("10.0.0.2:8000", "", time.Second, 100, 0)
	for i := range maxDashboardObjectives + 10 {
		done("10.0.0.2:8000", fmt.Sprintf("made-up-%d", i), time.Second, 0, 0)
	}
	// The latest dashboardSamples of "(none)": 600 fast ones push the slow
	// ones out.
	for range 600 {
		done("", "", time.Millisecond, 0, 0)
	}
	snap := m.Dashboard(store)
	reps := snap.Pools[0].Replicas
	if reps[0].Requests != 3 || reps[0].PrefixHitRate != 0.5 || reps[1].PrefixHitRate != 0 {
		t.Errorf("replicas %+v", reps)
	}
	if total := reps[0].Share + reps[1].Share; total < 0.999 || total > 1.001 || reps[0].Share <= 0 {
		t.Errorf("shares %v and %v", reps[0].Share, reps[1].Share)
	}
	if len(snap.Objectives) != maxDashboardObjectives+1 { // the bound, plus "other"
		t.Errorf("%d objectives, want %d", len(snap.Objectives), maxDashboardObjectives+1)
	}
	for _, o := range snap.Objectives {
		if o.Objective == "(none)" && (o.Latency["p99"] != 0.001 || o.Requests != 604) {
			t.Errorf("(none): %+v, want p99 over the last %d samples", o, dashboardSamples)
		}
	}

	ex := &scheduling.Explanation{Primary: "default", Profiles: []scheduling.ProfileExplanation{{Profile: "default", Picked: []string{"10.0.0.2:8000"},
		Scorers:    []scheduling.ScorerWeight{{Scorer: "queue-scorer", Weight: 1}},
		Candidates: []scheduling.CandidateExplanation{{Endpoint: "10.0.0.1:8000", Total: 0.2, Scores: []float64{0.2}}, {Endpoint: "10.0.0.2:8000", Total: 0.9, Scores: []float64{0.9}}}}}}
	for range maxDashboardDecisions + 5 {
		m.RecordDecision("ns/p", ex)
	}
	ex.Profiles[0].Candidates[1].Scores[0] = -1 // the director reuses it
	snap = m.Dashboard(store)
	if len(snap.Decisions) != maxDashboardDecisions {
		t.Fatalf("%d decisions kept, want %d", len(snap.Decisions), maxDashboardDecisions)
	}
	d := snap.Decisions[0]
	if d.Endpoint != "10.0.0.2:8000" || d.Candidates[0].Endpoint != "10.0.0.2:8000" || d.Candidates[0].Scores[0] != 0.9 {
		t.Errorf("decision %+v", d)
	}

	store.SetPool("ns/p", []datastore.EndpointSpec{{Name: "b", Address: "10.0.0.2:8000"}})
	m.Dashboard(store)
	if _, ok := m.dash.endpoints["ns/p\x0010.0.0.1:8000"]; ok {
		t.Error("an endpoint that left its pool is still tallied")
	}
}

// TestDashboardHandler_PageIsSelfContained: the page loads nothing from
// elsewhere, and only GET is served.
func TestDashboardHandler_PageIsSelfContained(t *testing.T) {
	h := NewMetrics().DashboardHandler(datastore.NewStore(nil))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, DashboardPath, nil))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "<svg") && !strings.Contains(body, "svg") {
		t.Fatalf("%d %.100s", w.Code, body)
	}
	for _, external := range []string{"http://", "https://", "src=", "<link"} {
		if strings.Contains(body, external) {
			t.Errorf("the page refers to something outside it: %q", external)
		}
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodDelete, DashboardJSONPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", w.Code)
	}
}

// Decisions are sampled for the dashboard only while its data is read: a
// gateway nobody watches explains none.
func TestDashboardRead_OnlyAfterTheDataIsServed(t *testing.T) {
	m := NewMetrics()
	if m.DashboardRead() {
		t.Fatal("dashboard read before anyone asked")
	}
	h := m.DashboardHandler(datastore.NewStore(nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DashboardPath, nil))
	if m.DashboardRead() {
		t.Error("the page alone (no data polled yet) counts as read")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DashboardJSONPath, nil))
	if rec.Code != http.StatusOK || !m.DashboardRead() {
		t.Errorf("data served (%d): not read", rec.Code)
	}
}
