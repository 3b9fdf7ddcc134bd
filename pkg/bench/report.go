package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report files WriteReport writes into a comparison's directory.
const (
	ReportJSON     = "results.json"
	ReportMarkdown = "report.md"
	ReportHTML     = "index.html"
)

// Table is a rendered table: a header row and rows of cells, written as
// Markdown or HTML from the same figures.
type Table struct {
	Title  string
	Note   string
	Header []string
	Rows   [][]string
	// Text is how many leading columns hold text (left-aligned); the rest
	// are figures (right-aligned). 0 means 1.
	Text int
}

// TextColumns is Text with its default.
func (t Table) TextColumns() int { return max(t.Text, 1) }

// Markdown renders t as a GitHub-flavoured Markdown table.
func (t Table) Markdown() string {
	var b strings.Builder
	if t.Title != "" {
		fmt.Fprintf(&b, "### %s\n\n", t.Title)
	}
	if t.Note != "" {
		fmt.Fprintf(&b, "%s\n\n", t.Note)
	}
	row := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	if len(t.Header) == 0 {
		return b.String()
	}
	row(t.Header)
	sep := make([]string, len(t.Header))
	for i := range sep {
		sep[i] = "---"
		if i >= t.TextColumns() {
			sep[i] = "---:"
		}
	}
	b.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, r := range t.Rows {
		row(r)
	}
	return b.String()
}

// DecisiveStage is the index of the stage a comparison is judged at: the
// highest load the baseline served without a single failed (or dropped)
// request. Above it the baseline sheds work, and latencies of the requests
// it did serve stop being comparable. It returns -1 when the baseline has
// no clean stage.
func DecisiveStage(baseline *ContenderResult) int {
	best := -1
	for i, s := range baseline.Stages {
		if s.Failed+s.Dropped > 0 || s.Succeeded == 0 {
			continue
		}
		if best < 0 || stageLoad(s) >= stageLoad(baseline.Stages[best]) {
			best = i
		}
	}
	return best
}

func stageLoad(s Summary) float64 {
	if s.Concurrency > 0 {
		return float64(s.Concurrency)
	}
	return s.QPS
}

// baselineResult returns the baseline contender's result, or nil.
func (c *Comparison) baselineResult() *ContenderResult {
	for i := range c.Contenders {
		if c.Contenders[i].Name == c.Baseline {
			return &c.Contenders[i]
		}
	}
	return nil
}

// KeyFigures is the table a comparison is judged by: every contender at
// the decisive stage, with ratios against the baseline.
func (c *Comparison) KeyFigures() Table {
	t := Table{Title: "Key figures at the decisive stage"}
	base := c.baselineResult()
	if base == nil {
		t.Note = "The baseline did not run."
		return t
	}
	d := DecisiveStage(base)
	if d < 0 {
		t.Note = fmt.Sprintf("%s failed requests at every stage; there is no decisive stage.", c.Baseline)
		return t
	}
	bs := base.Stages[d]
	t.Note = fmt.Sprintf("Stage %s: the highest load %s completed without errors. "+
		"TTFT ratio = %s's p90 TTFT ÷ the contender's (higher is better); throughput ratio = the contender's output tokens/s ÷ %s's. "+
		"Prefix-cache hit rate is the fleet's own (vllm:prefix_cache_hits_total ÷ queries_total over the whole run, warm-up included).",
		bs.Name, c.Baseline, c.Baseline, c.Baseline)
	t.Header = []string{"contender", "TTFT p50", "TTFT p90", "TTFT p90 ratio", "output tok/s", "throughput ratio", "req/s", "errors", "prefix-cache hit rate"}
	for i := range c.Contenders {
		r := &c.Contenders[i]
		if d >= len(r.Stages) {
			t.Rows = append(t.Rows, []string{r.Name, "—", "—", "—", "—", "—", "—", "—", pct(r.Fleet.HitRate)})
			continue
		}
		s := r.Stages[d]
		t.Rows = append(t.Rows, []string{
			r.Name, formatSeconds(s.TTFT.P50), formatSeconds(s.TTFT.P90), ratio(bs.TTFT.P90, s.TTFT.P90),
			fmt.Sprintf("%.0f", s.OutputTokenRate), ratio(s.OutputTokenRate, bs.OutputTokenRate),
			fmt.Sprintf("%.1f", s.RequestRate), errorsCell(s), pct(r.Fleet.HitRate),
		})
	}
	return t
}

// StageTable lists every contender at every stage.
func (c *Comparison) StageTable() Table {
	t := Table{
		Title: "Every stage",
		Note: "Offered = arrivals per second the stage generated; achieved req/s and output tok/s count requests that completed inside the stage's window. " +
			"Latencies are over the stage's successful requests; cache = prompt tokens served from the prefix cache (from the usage of each response).",
		Text:   2,
		Header: []string{"stage", "contender", "offered req/s", "achieved req/s", "output tok/s", "TTFT p50", "TTFT p90", "TTFT p99", "ITL p50", "ITL p90", "E2E p90", "cache", "errors"},
	}
	n := 0
	for _, r := range c.Contenders {
		n = max(n, len(r.Stages))
	}
	for i := range n {
		for _, r := range c.Contenders {
			if i >= len(r.Stages) {
				continue
			}
			t.Rows = append(t.Rows, stageRow(r.Stages[i], r.Name))
		}
	}
	return t
}

func stageRow(s Summary, name string) []string {
	return []string{
		s.Name, name, fmt.Sprintf("%.1f", s.OfferedRate), fmt.Sprintf("%.1f", s.RequestRate), fmt.Sprintf("%.0f", s.OutputTokenRate),
		formatSeconds(s.TTFT.P50), formatSeconds(s.TTFT.P90), formatSeconds(s.TTFT.P99),
		formatSeconds(s.ITL.P50), formatSeconds(s.ITL.P90), formatSeconds(s.E2E.P90), pct(s.CacheHitRatio), errorsCell(s),
	}
}

// ReplicaTable shows how each contender spread the load and what the
// replicas' prefix caches saved.
func (c *Comparison) ReplicaTable() Table {
	n := 0
	for _, r := range c.Contenders {
		n = max(n, len(r.Replicas))
	}
	t := Table{
		Title: "Replicas",
		Note: "From each replica's /metrics after the run (warm-up included): the fleet's prefix-cache hit rate, preemptions, " +
			"the mean TTFT the replicas themselves measured (modelled GPU seconds) and each replica's share of finished requests (vllm:request_success_total).",
		Header: []string{"contender", "hit rate", "preemptions", "replica TTFT mean"},
	}
	for i := range n {
		t.Header = append(t.Header, fmt.Sprintf("r%d", i))
	}
	for _, r := range c.Contenders {
		row := []string{r.Name, pct(r.Fleet.HitRate), fmt.Sprintf("%.0f", r.Fleet.Preemptions), formatSeconds(r.Fleet.MeanTTFT)}
		for i := range n {
			if i < len(r.Replicas) {
				row = append(row, pct(r.Replicas[i].Share))
			} else {
				row = append(row, "—")
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// CPUTable shows whether the machine, rather than the simulated GPUs, was
// the limit: CPU cores each process kept busy over the run.
func (c *Comparison) CPUTable() Table {
	t := Table{
		Title: "CPU",
		Note: fmt.Sprintf("Cores kept busy on average over each run (CPU seconds ÷ wall seconds) on a %d-CPU host. "+
			"If the benchmark's own total nears the host's CPUs, the machine, not the simulated fleet, limited the run; "+
			"\"other\" is what the rest of the machine used meanwhile, which competes with the simulated GPUs' clock and makes a run noisy.", c.Host.CPUs),
		Header: []string{"contender", "wall", "load generator", "gateway", "fleet", "benchmark total", "other processes"},
	}
	for _, r := range c.Contenders {
		w := r.CPU.Wall
		if w <= 0 {
			t.Rows = append(t.Rows, []string{r.Name, "—", "—", "—", "—", "—", "—"})
			continue
		}
		cores := func(s float64) string { return fmt.Sprintf("%.2f", s/w) }
		own := r.CPU.LoadGenerator + r.CPU.Gateway + r.CPU.Fleet
		other := "—"
		if r.CPU.Host > 0 {
			other = cores(max(r.CPU.Host-own, 0))
		}
		t.Rows = append(t.Rows, []string{r.Name, fmt.Sprintf("%.0fs", w), cores(r.CPU.LoadGenerator), cores(r.CPU.Gateway), cores(r.CPU.Fleet),
			cores(own), other})
	}
	return t
}

// FailureTable lists why requests failed, per contender.
func (c *Comparison) FailureTable() Table {
	t := Table{Title: "Failures", Header: []string{"contender", "kind", "status", "message", "requests"}, Text: 4}
	for _, r := range c.Contenders {
		for _, f := range r.Failures {
			status := ""
			if f.Status != 0 {
				status = strconv.Itoa(f.Status)
			}
			t.Rows = append(t.Rows, []string{r.Name, string(f.Kind), status, f.Message, strconv.Itoa(f.Count)})
		}
	}
	if len(t.Rows) == 0 {
		t.Note = "No request failed."
		t.Header = nil
	}
	return t
}

// ContenderTable describes the contenders.
func (c *Comparison) ContenderTable() Table {
	t := Table{Title: "Contenders", Header: []string{"contender", "what it is", "error"}, Text: 3}
	for _, r := range c.Contenders {
		t.Rows = append(t.Rows, []string{r.Name, r.Description, r.Error})
	}
	return t
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func ratio(num, den float64) string {
	if num <= 0 || den <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", num/den)
}

// errorsCell counts a stage's failures with their causes.
func errorsCell(s Summary) string {
	n := s.Failed + s.Dropped
	if n == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(mapKeys(s.ErrorsByKind)) {
		if k == string(ErrHTTP) {
			for _, st := range slices.Sorted(mapKeys(s.ErrorsByStatus)) {
				parts = append(parts, fmt.Sprintf("%s: %d", st, s.ErrorsByStatus[st]))
			}
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d", k, s.ErrorsByKind[k]))
	}
	if s.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("dropped: %d", s.Dropped))
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// WriteReport writes the comparison into dir: results.json (everything),
// report.md (the tables), the charts (SVG and PNG) and index.html (tables
// and charts on one page).
func WriteReport(dir string, c *Comparison) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReportJSON), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	charts, err := WriteCharts(dir, c)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ReportMarkdown), []byte(c.Markdown(charts)), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var html bytes.Buffer
	if err := c.HTML(&html, charts); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ReportHTML), html.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// tables are the report's tables in reading order.
func (c *Comparison) tables() []Table {
	t := []Table{c.KeyFigures(), c.StageTable()}
	if slo := c.SLOTable(); len(slo.Rows) > 0 {
		t = append(t, slo)
	}
	return append(t, c.ReplicaTable(), c.CPUTable(), c.FailureTable(), c.ContenderTable())
}

// SLOTable shows, for workloads with an SLO mix, how many requests with a
// time-to-first-token objective met it, per stage and contender.
func (c *Comparison) SLOTable() Table {
	t := Table{
		Title: "Latency objectives",
		Note: "Requests that carried x-slo-ttft-ms: met = succeeded with a TTFT within the objective; " +
			"a refusal (429) or a late first token is a miss.",
		Text:   2,
		Header: []string{"stage", "contender", "requests with objective", "met", "met %"},
	}
	n := 0
	for _, r := range c.Contenders {
		n = max(n, len(r.Stages))
	}
	for i := range n {
		for _, r := range c.Contenders {
			if i >= len(r.Stages) || r.Stages[i].SLO == nil {
				continue
			}
			s := r.Stages[i]
			t.Rows = append(t.Rows, []string{s.Name, r.Name, strconv.Itoa(s.SLO.Requests), strconv.Itoa(s.SLO.Met), pct(s.SLO.Ratio)})
		}
	}
	return t
}

// heading describes the run in a few lines: what, on what, how to rerun.
func (c *Comparison) heading() (title string, lines []string) {
	w := c.Workload
	title = "igw bench compare: " + w.Name
	if w.Description != "" {
		lines = append(lines, w.Description+".")
	}
	var stages []string
	for _, s := range w.Stages {
		stages = append(stages, fmt.Sprintf("%s for %s", s, s.Duration))
	}
	lines = append(lines,
		fmt.Sprintf("Fleet: %d simulated replicas (igw sim, engine %s, time-scale %g); every contender gets a fresh fleet. Load: %s, after a %s warm-up; seed %d.",
			c.Fleet.Replicas, c.Fleet.Engine, c.Fleet.TimeScale, strings.Join(stages, ", "), w.Warmup, w.Seed),
		fmt.Sprintf("Ran %s for %s on %d CPUs (%s/%s, %s).", c.StartedAt.UTC().Format(time.RFC3339), c.Elapsed.Round(time.Second), c.Host.CPUs, c.Host.OS, c.Host.Arch, c.Host.GoVersion),
	)
	if c.Version != "" {
		lines = append(lines, "Binary: `"+c.Version+"`.")
	}
	if c.Command != "" {
		lines = append(lines, "Command: `"+c.Command+"`")
	}
	return title, lines
}

// Markdown renders the report as Markdown, linking the charts.
func (c *Comparison) Markdown(charts []Chart) string {
	var b strings.Builder
	title, lines := c.heading()
	fmt.Fprintf(&b, "# %s\n\n", title)
	for _, l := range lines {
		b.WriteString(l + "\n\n")
	}
	for _, t := range c.tables() {
		b.WriteString(t.Markdown() + "\n")
	}
	if len(charts) > 0 {
		b.WriteString("### Charts\n\n")
		for _, ch := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n\n", ch.Title, ch.SVG)
		}
	}
	return b.String()
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"code": func(s string) template.HTML {
		// The heading's one Markdown construct: `command`.
		esc := template.HTMLEscapeString(s)
		parts := strings.Split(esc, "`")
		for i := 1; i < len(parts); i += 2 {
			parts[i] = "<code>" + parts[i] + "</code>"
		}
		return template.HTML(strings.Join(parts, ""))
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.text, td.text { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(36em, 1fr)); gap: 1em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{range .Lines}}<p>{{code .}}</p>
{{end}}
{{with index .Tables 0}}<h2>{{.Title}}</h2>
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
{{template "table" .}}{{end}}
<h2>Charts</h2>
<div class="charts">
{{range .Charts}}<figure><a href="{{.SVG}}"><img src="{{.SVG}}" alt="{{.Title}}"></a><figcaption>{{.Title}} (<a href="{{.SVG}}">SVG</a>; a PNG of the same name sits beside it)</figcaption></figure>
{{end}}</div>
{{range slice .Tables 1}}<h2>{{.Title}}</h2>
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
{{template "table" .}}{{end}}
<p class="note">Everything measured: <a href="results.json">results.json</a>. Markdown: <a href="report.md">report.md</a>.</p>
</body>
</html>
{{define "table"}}{{if .Header}}{{$text := .TextColumns}}<table>
<thead><tr>{{range $i, $h := .Header}}<th{{if lt $i $text}} class="text"{{end}}>{{$h}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr>{{range $i, $c := .}}<td{{if lt $i $text}} class="text"{{end}}>{{$c}}</td>{{end}}</tr>
{{end}}</tbody>
</table>{{end}}
{{end}}`))

// HTML renders the report as one page with the tables and the charts
// embedded.
func (c *Comparison) HTML(w io.Writer, charts []Chart) error {
	title, lines := c.heading()
	err := htmlReport.Execute(w, struct {
		Title  string
		Lines  []string
		Tables []Table
		Charts []Chart
	}{title, lines, c.tables(), charts})
	if err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}

// RunTable summarizes one run (igw bench run) stage by stage.
func RunTable(r *RunResult) Table {
	t := Table{Text: 2, Header: []string{"stage", "target", "offered req/s", "achieved req/s", "output tok/s", "TTFT p50", "TTFT p90", "TTFT p99", "ITL p50", "ITL p90", "E2E p90", "cache", "errors"}}
	for _, s := range append(slices.Clone(r.Stages), r.Total) {
		t.Rows = append(t.Rows, stageRow(s, r.Target))
	}
	return t
}

// EndpointTable spreads a run's requests over the endpoints that served
// them (from the gateway's x-gateway-destination-endpoint-served header).
func EndpointTable(s Summary) Table {
	t := Table{Header: []string{"endpoint", "requests", "share"}}
	eps := make([]string, 0, len(s.Endpoints))
	for ep := range s.Endpoints {
		eps = append(eps, ep)
	}
	sort.Strings(eps)
	for _, ep := range eps {
		e := s.Endpoints[ep]
		t.Rows = append(t.Rows, []string{ep, strconv.Itoa(e.Requests), pct(e.Share)})
	}
	return t
}
