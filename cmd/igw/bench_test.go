package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/bench"
	"github.com/igw-dev/igw/pkg/sim"
)

// igwBinary is the igw binary TestMain builds for the tests that run it as
// a child process (igw bench compare starts `igw sim` and `igw serve`). It
// is written only by TestMain, before any test runs.
var igwBinary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "igw-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	igwBinary = filepath.Join(dir, "igw")
	if out, err := exec.Command("go", "build", "-o", igwBinary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building igw: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// tinyWorkload is a comparison that takes seconds: 2 replicas 20× faster
// than real time, a short warm-up and two short stages.
const tinyWorkload = `name: tiny
description: two groups on two replicas
model: m
seed: 5
shared_prefix: {num_groups: 2, num_prompts_per_group: 3, system_prompt_len: 400, question_len: 20, output_len: 8}
warmup: 300ms
request_timeout: 10s
stages:
  - {qps: 10, duration: 1s}
  - {qps: 20, duration: 1s}
fleet:
  replicas: 2
  time-scale: 20
  max-num-seqs: 4
  kv-cache-blocks: 300
`

func TestBenchCompare_TinyComparisonEndToEnd(t *testing.T) {
	dir := t.TempDir()
	wl := filepath.Join(dir, "tiny.yaml")
	if err := os.WriteFile(wl, []byte(tinyWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, igwBinary, "bench", "compare", "--workload", wl, "--out", out,
		"--only", "igw-default,round-robin")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("igw bench compare: %v\n%s", err, stdout.String())
	}
	log := stdout.String()
	if strings.Contains(log, "\r") {
		t.Fatalf("progress line drawn into a pipe:\n%q", log)
	}
	for _, want := range []string{"[1/2] igw-default", "[2/2] round-robin", "Key figures", "index.html"} {
		if !strings.Contains(log, want) {
			t.Fatalf("output lacks %q:\n%s", want, log)
		}
	}

	var c bench.Comparison
	data, err := os.ReadFile(filepath.Join(out, bench.ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if c.Baseline != "round-robin" || len(c.Contenders) != 2 || c.Fleet.Replicas != 2 {
		t.Fatalf("comparison %+v", c)
	}
	for _, r := range c.Contenders {
		if r.Error != "" || len(r.Stages) != 2 || r.Total.Succeeded == 0 || r.Total.Failed != 0 {
			t.Fatalf("%s: error %q, %d stages, total %+v", r.Name, r.Error, len(r.Stages), r.Total)
		}
		if len(r.Replicas) != 2 || r.Fleet.Requests < float64(r.Total.Succeeded) || r.Fleet.HitRate <= 0 {
			t.Fatalf("%s: replicas %+v fleet %+v", r.Name, r.Replicas, r.Fleet)
		}
		// Every request went through the gateway, which names the replica.
		if _, unknown := r.Total.Endpoints[bench.UnknownEndpoint]; unknown || len(r.Total.Endpoints) == 0 {
			t.Fatalf("%s: endpoints %v", r.Name, r.Total.Endpoints)
		}
		if r.CPU.Wall <= 0 || r.CPU.Gateway <= 0 || r.CPU.Fleet <= 0 {
			t.Fatalf("%s: cpu %+v", r.Name, r.CPU)
		}
	}
	if rr := c.Contenders[1]; rr.Replicas[0].Share < 0.3 || rr.Replicas[0].Share > 0.7 {
		t.Fatalf("round-robin shares %v", rr.Replicas)
	}

	for _, chart := range []string{"ttft-p50", "ttft-p90", "throughput", "replica-share"} {
		svg, err := os.ReadFile(filepath.Join(out, chart+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		if err := wellFormedXML(svg); err != nil || !bytes.Contains(svg, []byte("<svg")) {
			t.Fatalf("%s.svg: not SVG: %v", chart, err)
		}
		if _, err := os.Stat(filepath.Join(out, chart+".png")); err != nil {
			t.Fatal(err)
		}
	}
	html, err := os.ReadFile(filepath.Join(out, bench.ReportHTML))
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, bench.ReportMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<table>", `<td class="text">igw-default</td>`, `<td class="text">round-robin</td>`, `<img src="ttft-p90.svg"`} {
		if !bytes.Contains(html, []byte(want)) {
			t.Fatalf("index.html lacks %q", want)
		}
	}
	if !bytes.Contains(md, []byte("| qps=20 | igw-default |")) {
		t.Fatalf("report.md lacks the stage table:\n%s", md)
	}
	// Child configurations and logs are kept for diagnosis; no child
	// outlives the command (each was stopped, and the group killed).
	for _, f := range []string{"igw-default.gateway.yaml", "igw-default.sim.log", "round-robin.gateway.log"} {
		if _, err := os.Stat(filepath.Join(out, "logs", f)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBenchCompare_CommandContender(t *testing.T) {
	// An external contender started from a command: here igw serve itself
	// is not used; the command is a second simulator standing in for a
	// gateway, which shows the template and the readiness wait work.
	dir := t.TempDir()
	wl := filepath.Join(dir, "tiny.yaml")
	if err := os.WriteFile(wl, []byte(tinyWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, igwBinary, "bench", "compare", "--workload", wl, "--out", filepath.Join(dir, "out"),
		"--igw", igwBinary, "--only", "direct",
		"--contender", "direct=cmd:"+igwBinary+" sim --port {{.Port}} --model {{.Model}} --time-scale 20 # fleet: {{.Replicas}}")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("igw bench compare: %v\n%s", err, stdout.String())
	}
	var c bench.Comparison
	data, err := os.ReadFile(filepath.Join(dir, "out", bench.ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	r := c.Contenders[0]
	if c.Baseline != "direct" || r.Kind != bench.ContenderCommand || r.Error != "" || r.Total.Succeeded == 0 {
		t.Fatalf("contender %+v", r)
	}
	// The stand-in served everything itself: the fleet saw no request.
	if r.Fleet.Requests != 0 {
		t.Fatalf("fleet served %g requests", r.Fleet.Requests)
	}
}

func TestSelectContenders(t *testing.T) {
	all, err := selectContenders([]string{"ext=http://127.0.0.1:9"}, nil)
	if err != nil || len(all) != 6 || all[5].Name != "ext" {
		t.Fatalf("%v %v", all, err)
	}
	some, err := selectContenders(nil, []string{"random", "igw-default"})
	if err != nil || len(some) != 2 || some[0].Name != "random" || some[1].Name != "igw-default" {
		t.Fatalf("%v %v", some, err)
	}
	if _, err := selectContenders(nil, []string{"nope"}); err == nil {
		t.Fatal("unknown --only name accepted")
	}
	if _, err := selectContenders([]string{"round-robin=http://h"}, nil); err == nil {
		t.Fatal("a built-in name taken by an external contender")
	}
}

func TestBenchRun_AgainstSimulator(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Port, cfg.Model, cfg.TimeScale = 0, "m", 20
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	}()
	dir := t.TempDir()
	wl := filepath.Join(dir, "tiny.yaml")
	if err := os.WriteFile(wl, []byte(tinyWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	err = runBenchRun(context.Background(), &stdout, benchRunFlags{
		target: "http://" + f.Addrs()[0], workload: wl, out: dir, headers: []string{"Authorization: Bearer x"},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	for _, want := range []string{"| qps=10 |", "| qps=20 |", "| total |", "results.json"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	var res bench.RunResult
	data, err := os.ReadFile(filepath.Join(dir, bench.ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Stages) != 2 || res.Total.Succeeded == 0 || res.Total.Failed != 0 || len(res.Requests) == 0 {
		t.Fatalf("result: %d stages, total %+v, %d requests", len(res.Stages), res.Total, len(res.Requests))
	}
	if err := runBenchRun(context.Background(), io.Discard, benchRunFlags{target: "http://x", workload: wl, headers: []string{"no colon"}}); err == nil {
		t.Fatal("a malformed --header was accepted")
	}
}

// wellFormedXML reads every token of doc.
func wellFormedXML(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
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

// TestBenchCompare_PreciseAndActiveActiveContenders runs the optional
// contenders of issue 15 on the tiny workload: igw-precise (the fleet then
// publishes KV-cache events and tokenizes with the repository's small
// tokenizer) and igw-precise-x2 (two igw serve replicas sharing in-flight
// counts through a real redis-server, behind a real haproxy).
func TestBenchCompare_PreciseAndActiveActiveContenders(t *testing.T) {
	haproxy, redis := os.Getenv("IGW_HAPROXY"), os.Getenv("IGW_REDIS_SERVER")
	if haproxy == "" {
		haproxy, _ = exec.LookPath("haproxy")
	}
	if redis == "" {
		redis, _ = exec.LookPath("redis-server")
	}
	if haproxy == "" || redis == "" {
		if os.Getenv("IGW_REQUIRE_REDIS") == "1" {
			t.Fatalf("haproxy (%q) and redis-server (%q) are required under make test", haproxy, redis)
		}
		t.Skip("needs haproxy and redis-server: `make bench-tools`")
	}
	tokenizer, err := filepath.Abs("../../pkg/tokenizer/testdata/tiny-chatml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wl := filepath.Join(dir, "tiny.yaml")
	if err := os.WriteFile(wl, []byte(tinyWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, igwBinary, "bench", "compare", "--workload", wl, "--out", out,
		"--only", "igw-precise,igw-precise-x2", "--tokenizer", tokenizer, "--haproxy", haproxy, "--redis-server", redis)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("igw bench compare: %v\n%s", err, stdout.String())
	}
	var c bench.Comparison
	data, err := os.ReadFile(filepath.Join(out, bench.ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(c.Contenders) != 2 {
		t.Fatalf("%d contenders", len(c.Contenders))
	}
	for _, r := range c.Contenders {
		if r.Error != "" || r.Total.Succeeded == 0 || r.Total.Failed != 0 || r.Fleet.HitRate <= 0 {
			t.Fatalf("%s: error %q, total %+v, fleet %+v\n%s", r.Name, r.Error, r.Total, r.Fleet, stdout.String())
		}
	}
	// The gateways subscribed to the fleet's events with its tokenizer.
	for _, f := range []string{"igw-precise.gateway.yaml", "igw-precise-x2.0.gateway.yaml", "igw-precise-x2.1.gateway.yaml", "igw-precise-x2.haproxy.cfg"} {
		b, err := os.ReadFile(filepath.Join(out, "logs", f))
		if err != nil {
			t.Fatal(err)
		}
		want := "kvEventsPort"
		if strings.HasSuffix(f, ".cfg") {
			want = "balance roundrobin"
		}
		if !bytes.Contains(b, []byte(want)) {
			t.Fatalf("%s lacks %q:\n%s", f, want, b)
		}
	}
	// Both replicas served: haproxy alternated between them.
	for _, g := range []string{"0", "1"} {
		if _, err := os.Stat(filepath.Join(out, "logs", "igw-precise-x2."+g+".gateway.log")); err != nil {
			t.Fatal(err)
		}
	}
}
