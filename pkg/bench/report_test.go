package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStage is a stage summary with the figures the report reads.
func fakeStage(i int, qps, ttftP90, outRate float64, failed int) Summary {
	return Summary{
		Stage: i, Name: Stage{QPS: qps}.String(), QPS: qps, Seconds: 10, Requests: 100, Succeeded: 100 - failed, Failed: failed,
		OfferedRate: qps, RequestRate: outRate / 100, OutputTokenRate: outRate, CacheHitRatio: 0.5,
		TTFT: Dist{Count: 100 - failed, P50: ttftP90 / 2, P90: ttftP90, P99: ttftP90 * 2},
		ITL:  Dist{Count: 1000, P50: 0.01, P90: 0.02}, E2E: Dist{Count: 100, P90: 1.5},
		ErrorsByKind: map[string]int{}, ErrorsByStatus: map[string]int{},
	}
}

func fakeComparison() *Comparison {
	w := &Workload{Name: "fake", Description: "a fake workload", Model: "m", Seed: 7,
		Stages: []Stage{{QPS: 10, Duration: Duration{10 * time.Second}}, {QPS: 20, Duration: Duration{10 * time.Second}}, {QPS: 40, Duration: Duration{10 * time.Second}}}}
	rr := ContenderResult{Contender: Contender{Name: ContenderRoundRobin, Kind: ContenderBuiltin, Description: "rr"},
		Stages:   []Summary{fakeStage(0, 10, 0.2, 1000, 0), fakeStage(1, 20, 3.0, 1500, 0), fakeStage(2, 40, 9, 1500, 12)},
		Replicas: []ReplicaStats{{Address: "a", Share: 0.5, HitRate: 0.2}, {Address: "b", Share: 0.5, HitRate: 0.2}},
		Fleet:    FleetCache{HitRate: 0.2}, CPU: CPUUsage{Wall: 30, LoadGenerator: 3, Gateway: 6, Fleet: 9}}
	rr.Stages[2].ErrorsByKind["timeout"] = 10
	rr.Stages[2].ErrorsByKind["http"] = 2
	rr.Stages[2].ErrorsByStatus["503"] = 2
	igw := ContenderResult{Contender: Contender{Name: ContenderIGWDefault, Kind: ContenderBuiltin, Description: "igw"},
		Stages:   []Summary{fakeStage(0, 10, 0.1, 1000, 0), fakeStage(1, 20, 0.3, 2000, 0), fakeStage(2, 40, 0.5, 4000, 0)},
		Replicas: []ReplicaStats{{Address: "a", Share: 0.6, HitRate: 0.9}, {Address: "b", Share: 0.4, HitRate: 0.9}},
		Fleet:    FleetCache{HitRate: 0.9}, CPU: CPUUsage{Wall: 30, LoadGenerator: 3, Gateway: 6, Fleet: 9}}
	broken := ContenderResult{Contender: Contender{Name: "broken", Kind: ContenderURL, Description: "x | y"}, Error: "starting the contender: refused"}
	return &Comparison{Workload: w, Fleet: FleetSettings{Replicas: 2, Engine: "vllm", TimeScale: 1}, Baseline: ContenderRoundRobin,
		StartedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Elapsed: Duration{time.Minute}, Host: Host{CPUs: 2},
		Command: "igw bench compare --workload fake.yaml", Contenders: []ContenderResult{igw, rr, broken}}
}

func TestDecisiveStage_HighestCleanLoad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failed []int
		qps    []float64
		want   int
	}{
		{"last stage fails", []int{0, 0, 3}, []float64{10, 20, 40}, 1},
		{"all clean", []int{0, 0, 0}, []float64{10, 20, 40}, 2},
		{"a dip in the middle still counts the higher clean stage", []int{0, 1, 0}, []float64{10, 20, 40}, 2},
		{"unordered ladder", []int{0, 0, 0}, []float64{40, 10, 20}, 0},
		{"none clean", []int{1, 1}, []float64{10, 20}, -1},
	} {
		r := &ContenderResult{}
		for i := range tc.failed {
			r.Stages = append(r.Stages, fakeStage(i, tc.qps[i], 1, 1, tc.failed[i]))
		}
		if got := DecisiveStage(r); got != tc.want {
			t.Errorf("%s: stage %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestKeyFigures_RatiosAgainstBaseline(t *testing.T) {
	kf := fakeComparison().KeyFigures()
	if !strings.Contains(kf.Note, "qps=20") {
		t.Fatalf("note %q does not name the decisive stage", kf.Note)
	}
	rows := map[string][]string{}
	for _, r := range kf.Rows {
		rows[r[0]] = r
	}
	// igw at qps=20: TTFT p90 0.3 s vs 3.0 s, 2000 vs 1500 tokens/s.
	if got := rows[ContenderIGWDefault]; got[3] != "10.00×" || got[5] != "1.33×" || got[8] != "90.0%" {
		t.Fatalf("igw row %v", got)
	}
	if got := rows[ContenderRoundRobin]; got[3] != "1.00×" || got[5] != "1.00×" {
		t.Fatalf("baseline row %v", got)
	}
	if got := rows["broken"]; got[1] != "—" {
		t.Fatalf("a contender without results: %v", got)
	}
	if cell := errorsCell(fakeComparison().Contenders[1].Stages[2]); cell != "12 (503: 2, timeout: 10)" {
		t.Fatalf("errors cell %q", cell)
	}
}

func TestWriteReport_FilesExistAndParse(t *testing.T) {
	dir := t.TempDir()
	c := fakeComparison()
	if err := WriteReport(dir, c); err != nil {
		t.Fatal(err)
	}
	checkReport(t, dir, []string{ContenderIGWDefault, ContenderRoundRobin, "broken"})

	var back Comparison
	data, _ := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Contenders) != 3 || back.Contenders[1].Stages[1].TTFT.P90 != 3.0 || back.Workload.Stages[2].Duration.Duration != 10*time.Second {
		t.Fatalf("results.json round trip lost data: %+v", back.Contenders)
	}
}

// checkReport checks that a comparison directory holds every report file,
// that they parse, and that the tables name every contender.
func checkReport(t *testing.T, dir string, contenders []string) {
	t.Helper()
	var c Comparison
	data, err := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	for _, chart := range []string{"ttft-p50", "ttft-p90", "throughput", "replica-share"} {
		svg, err := os.ReadFile(filepath.Join(dir, chart+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		if err := wellFormedXML(svg); err != nil || !bytes.Contains(svg, []byte("<svg")) {
			t.Fatalf("%s.svg is not SVG: %v", chart, err)
		}
		png, err := os.ReadFile(filepath.Join(dir, chart+".png"))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("%s.png is not a PNG: %v", chart, err)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(dir, ReportHTML))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| contender | TTFT p50 | TTFT p90 |", "| stage | contender | offered req/s |", "ttft-p90.svg"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Fatalf("report.md lacks %q", want)
		}
	}
	for _, want := range []string{"<table>", "<th>TTFT p90 ratio</th>", "<th>offered req/s</th>", `<th class="text">contender</th>`, `<img src="ttft-p90.svg"`, `<img src="replica-share.svg"`} {
		if !bytes.Contains(html, []byte(want)) {
			t.Fatalf("index.html lacks %q", want)
		}
	}
	for _, name := range contenders {
		if !bytes.Contains(md, []byte("| "+name+" |")) || !bytes.Contains(html, []byte(`<td class="text">`+name+"</td>")) {
			t.Fatalf("contender %s missing from the tables", name)
		}
	}
}

// wellFormedXML reads every token of doc.
func wellFormedXML(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func TestTableMarkdown_EscapesPipes(t *testing.T) {
	md := Table{Header: []string{"a", "b"}, Rows: [][]string{{"x | y", "1"}}}.Markdown()
	if !strings.Contains(md, `x \| y`) || !strings.Contains(md, "|---|---:|") {
		t.Fatalf("%s", md)
	}
}

func TestLogTicks_LabelsOneTwoFive(t *testing.T) {
	var labels []string
	for _, tk := range (logTicks{}).Ticks(0.1, 3) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if strings.Join(labels, " ") != "0.1 0.2 0.5 1 2" {
		t.Fatalf("labels %v", labels)
	}
	if step125Below(0.37) != 0.2 || step125Above(0.37) != 0.5 || step125Above(6) != 10 || step125Below(1) != 1 {
		t.Fatal("1-2-5 steps")
	}
}
