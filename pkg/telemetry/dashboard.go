package telemetry

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// dashboardPage is the live dashboard: one page, no external assets, that
// polls DashboardJSONPath every second and draws its charts itself.
//
//go:embed dashboard.html
var dashboardPage []byte

// Paths of the live dashboard on the admin address.
const (
	DashboardPath     = "/dashboard"
	DashboardJSONPath = "/api/dashboard"
)

// Bounds of what the dashboard keeps, whatever clients send.
const (
	// maxDashboardObjectives is how many distinct objectives (a header a
	// client sets) get their own percentiles; later ones are "other".
	maxDashboardObjectives = 32
	// dashboardSamples is how many recent requests each objective's
	// percentiles are computed over.
	dashboardSamples = 512
	// maxDashboardDecisions is how many recent decisions are shown.
	maxDashboardDecisions = 20
	// dashboardCandidates is how many candidates of a decision are kept.
	dashboardCandidates = 5
	// DecisionSampleEvery is how often a scheduling decision is explained
	// for the dashboard: one in this many, so the scores shown cost the
	// scheduler an explanation on a small share of requests.
	DecisionSampleEvery = 16
	// dashboardReadWindow is how long after the dashboard's data was last
	// served decisions keep being sampled for it: the page polls every
	// second, a script may poll less often.
	dashboardReadWindow = time.Minute
)

// dashboard is what the live dashboard shows that the Prometheus metrics
// do not hold: per endpoint, the requests it served and its prompt tokens
// found in cache; per objective, the latest latencies (for exact
// percentiles); the latest decisions with their scores. Everything is
// bounded: endpoints leave with their pool, objectives fold, rings wrap.
type dashboard struct {
	mu         sync.Mutex
	endpoints  map[string]*endpointTally // by pool + "\x00" + address
	objectives map[string]*latencyRing
	decisions  []DashboardDecision // ring, oldest first
	// read is when the dashboard's data was last served (unix
	// nanoseconds): decisions are sampled only while someone reads it.
	read atomic.Int64
}

type endpointTally struct {
	requests, inputTokens, cachedTokens int64
}

type latencyRing struct {
	ttft, took []float64 // seconds; rings of dashboardSamples
	next, n    int
	count      int64
}

func newDashboard() *dashboard {
	return &dashboard{endpoints: map[string]*endpointTally{}, objectives: map[string]*latencyRing{}}
}

func (d *dashboard) done(c *director.Completion) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Endpoint != "" && c.Pool != "" {
		k := c.Pool + "\x00" + c.Endpoint
		t := d.endpoints[k]
		if t == nil {
			t = &endpointTally{}
			d.endpoints[k] = t
		}
		t.requests++
		if c.HasUsage {
			t.inputTokens += int64(c.InputTokens)
			t.cachedTokens += int64(c.CachedTokens)
		}
	}
	if c.Status != http.StatusOK {
		return
	}
	obj := c.Objective
	if obj == "" {
		obj = "(none)"
	}
	r := d.objectives[obj]
	if r == nil {
		if len(d.objectives) >= maxDashboardObjectives {
			obj = "other"
			r = d.objectives[obj]
		}
		if r == nil {
			r = &latencyRing{ttft: make([]float64, dashboardSamples), took: make([]float64, dashboardSamples)}
			d.objectives[obj] = r
		}
	}
	r.ttft[r.next], r.took[r.next] = c.TTFT.Seconds(), c.Took.Seconds()
	r.next = (r.next + 1) % dashboardSamples
	r.n = min(r.n+1, dashboardSamples)
	r.count++
}

// DashboardRead reports whether the dashboard's data was served within the
// last minute: the Director samples decisions for it only then
// (director.Options.DecisionsWanted), so a gateway nobody watches does not
// explain any.
func (m *Metrics) DashboardRead() bool {
	return time.Now().UnixNano()-m.dash.read.Load() < int64(dashboardReadWindow)
}

// RecordDecision keeps a sampled scheduling decision with its candidates'
// scores for the dashboard (director.Options.Decisions).
func (m *Metrics) RecordDecision(pool string, ex *scheduling.Explanation) {
	d := m.dash
	dec := DashboardDecision{Time: time.Now().UnixMilli(), Pool: pool}
	for _, p := range ex.Profiles {
		if p.Profile != ex.Primary {
			continue
		}
		dec.Profile = p.Profile
		if len(p.Picked) > 0 {
			dec.Endpoint = p.Picked[0]
		}
		for _, s := range p.Scorers {
			dec.Scorers = append(dec.Scorers, s.Scorer)
		}
		best := slices.Clone(p.Candidates)
		sort.SliceStable(best, func(i, j int) bool { return best[i].Total > best[j].Total })
		for _, c := range best[:min(len(best), dashboardCandidates)] {
			dec.Candidates = append(dec.Candidates, DashboardCandidate{Endpoint: c.Endpoint, Total: c.Total, Scores: slices.Clone(c.Scores)})
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.decisions) == maxDashboardDecisions {
		d.decisions = append(d.decisions[:0], d.decisions[1:]...)
	}
	d.decisions = append(d.decisions, dec)
}

// DashboardSnapshot is the live dashboard's data at one moment, served as
// JSON at DashboardJSONPath for the page and for scripts.
type DashboardSnapshot struct {
	Time       int64                `json:"time"` // Unix milliseconds
	Pools      []DashboardPool      `json:"pools"`
	Admission  []DashboardQueue     `json:"admission"`
	Shed       map[string]float64   `json:"shed"`   // refusals before a model server, by reason
	Errors     map[string]float64   `json:"errors"` // answers of status ≥ 400, by status
	Objectives []DashboardObjective `json:"objectives"`
	Decisions  []DashboardDecision  `json:"decisions"` // newest last
}

// DashboardPool is one pool and its replicas.
type DashboardPool struct {
	Name     string             `json:"name"`
	Replicas []DashboardReplica `json:"replicas"`
}

// DashboardReplica is one endpoint as the gateway sees it now.
type DashboardReplica struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Ready   bool   `json:"ready"`
	// Queue and Running are the model server's waiting and running
	// requests at the last scrape; KVCache its KV-cache use (0..1).
	Queue   int     `json:"queue"`
	Running int     `json:"running"`
	KVCache float64 `json:"kvCache"`
	// InFlight is igw's requests on their way to or answered by it.
	InFlight int64 `json:"inFlight"`
	// Requests is how many it served; Share its part of the pool's;
	// PrefixHitRate its prompt tokens found in its cache over all.
	Requests      int64   `json:"requests"`
	Share         float64 `json:"share"`
	PrefixHitRate float64 `json:"prefixHitRate"`
}

// DashboardQueue is a pool's admission queue at one priority.
type DashboardQueue struct {
	Pool     string  `json:"pool"`
	Priority string  `json:"priority"`
	Queued   float64 `json:"queued"`
}

// DashboardObjective is the latest latencies of one objective's requests.
type DashboardObjective struct {
	Objective string             `json:"objective"`
	Requests  int64              `json:"requests"`
	TTFT      map[string]float64 `json:"ttft"`    // p50, p90, p99 in seconds
	Latency   map[string]float64 `json:"latency"` // same
}

// DashboardDecision is one sampled scheduling decision.
type DashboardDecision struct {
	Time       int64                `json:"time"`
	Pool       string               `json:"pool"`
	Profile    string               `json:"profile"`
	Endpoint   string               `json:"endpoint"`
	Scorers    []string             `json:"scorers"`
	Candidates []DashboardCandidate `json:"candidates"`
}

// DashboardCandidate is one candidate of a decision: its weighted total and
// its scores in the order of the decision's scorers.
type DashboardCandidate struct {
	Endpoint string    `json:"endpoint"`
	Total    float64   `json:"total"`
	Scores   []float64 `json:"scores"`
}

// Dashboard is the live dashboard's data now: endpoints from the store,
// admission queues, refusals and errors from the metrics, the rest from
// what the dashboard recorded.
func (m *Metrics) Dashboard(store *datastore.Store) *DashboardSnapshot {
	snap := &DashboardSnapshot{Time: time.Now().UnixMilli(), Shed: map[string]float64{}, Errors: map[string]float64{},
		Pools: []DashboardPool{}, Admission: []DashboardQueue{}, Objectives: []DashboardObjective{}}
	d := m.dash
	d.mu.Lock()
	live := map[string]bool{}
	for _, name := range store.PoolNames() {
		pool := store.Pool(name)
		if pool == nil {
			continue
		}
		dp := DashboardPool{Name: name, Replicas: []DashboardReplica{}}
		var total int64
		for _, ep := range pool.Endpoints {
			k := name + "\x00" + ep.Address
			live[k] = true
			r := DashboardReplica{Name: ep.Name, Address: ep.Address, Ready: ep.Ready(), InFlight: ep.InFlight()}
			if mt := ep.Metrics(); mt != nil {
				r.Queue, r.Running, r.KVCache = mt.WaitingQueueSize, mt.RunningRequests, mt.KVCacheUsage
			}
			if t := d.endpoints[k]; t != nil {
				r.Requests = t.requests
				if t.inputTokens > 0 {
					r.PrefixHitRate = float64(t.cachedTokens) / float64(t.inputTokens)
				}
			}
			total += r.Requests
			dp.Replicas = append(dp.Replicas, r)
		}
		for i := range dp.Replicas {
			if total > 0 {
				dp.Replicas[i].Share = float64(dp.Replicas[i].Requests) / float64(total)
			}
		}
		snap.Pools = append(snap.Pools, dp)
	}
	for k := range d.endpoints {
		if !live[k] {
			delete(d.endpoints, k) // the endpoint left its pool
		}
	}
	for name, r := range d.objectives {
		o := DashboardObjective{Objective: name, Requests: r.count,
			TTFT: percentiles(r.ttft[:r.n]), Latency: percentiles(r.took[:r.n])}
		snap.Objectives = append(snap.Objectives, o)
	}
	snap.Decisions = slices.Clone(d.decisions)
	d.mu.Unlock()
	sort.Slice(snap.Objectives, func(i, j int) bool { return snap.Objectives[i].Objective < snap.Objectives[j].Objective })

	fams, _ := m.Registry.Gather()
	for _, f := range fams {
		switch f.GetName() {
		case "igw_flow_control_queue_size":
			for _, mt := range f.GetMetric() {
				l := labelMap(mt)
				snap.Admission = append(snap.Admission, DashboardQueue{Pool: l["pool"], Priority: l["priority"], Queued: mt.GetGauge().GetValue()})
			}
		case "igw_rejected_requests_total":
			for _, mt := range f.GetMetric() {
				snap.Shed[labelMap(mt)["reason"]] += mt.GetCounter().GetValue()
			}
		case "igw_requests_total":
			for _, mt := range f.GetMetric() {
				if code := labelMap(mt)["code"]; code >= "400" && len(code) == 3 {
					snap.Errors[code] += mt.GetCounter().GetValue()
				}
			}
		}
	}
	return snap
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// percentiles are the p50, p90 and p99 of samples (nearest rank).
func percentiles(samples []float64) map[string]float64 {
	out := map[string]float64{"p50": 0, "p90": 0, "p99": 0}
	if len(samples) == 0 {
		return out
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}} {
		i := int(p.q*float64(len(s))+0.999999) - 1
		out[p.name] = s[max(0, min(i, len(s)-1))]
	}
	return out
}

// DashboardHandler serves the live dashboard's page at DashboardPath and
// its data at DashboardJSONPath, for an admin mux.
func (m *Metrics) DashboardHandler(store *datastore.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DashboardPath, func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(dashboardPage)))
		// Nothing from elsewhere: the page is self-contained.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
		_, _ = w.Write(dashboardPage)
	})
	mux.HandleFunc("GET "+DashboardJSONPath, func(w http.ResponseWriter, _ *http.Request) {
		m.dash.read.Store(time.Now().UnixNano())
		body, err := json.Marshal(m.Dashboard(store))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
	return mux
}
