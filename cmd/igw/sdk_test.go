package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startDemo runs igw demo on free ports until the test ends and returns
// the gateway's API and admin addresses.
func startDemo(t *testing.T) (api, admin string) {
	t.Helper()
	base := freePortRange(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, out, demoOptions{replicas: 2, simPort: base, address: "127.0.0.1:0", admin: "127.0.0.1:0", timeScale: 20})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "Serving until Ctrl-C") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("demo did not start:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s := out.String()
	a := regexp.MustCompile(`igw gateway on http://(\S+) `).FindStringSubmatch(s)
	m := regexp.MustCompile(`Metrics: http://(\S+)/metrics`).FindStringSubmatch(s)
	if a == nil || m == nil {
		t.Fatalf("no addresses in the demo's output:\n%s", s)
	}
	return a[1], m[1]
}

// TestSDK_OfficialClientsAgainstTheDemo runs test/node/sdk.cjs: the
// official openai and @anthropic-ai/sdk npm packages (pinned in
// test/node/package-lock.json, installed into bin/node-sdk by `make
// node-sdk`) against igw demo, as a new user would try it: models list and
// retrieve, chat (plain, streamed with usage), completions, embeddings,
// responses (plain, streamed), an unknown model (404 model_not_found),
// malformed JSON, an oversized body, and Anthropic's messages (plain,
// streamed) through igw to igw sim. It skips only when node is not
// installed; the packages it installs itself.
func TestSDK_OfficialClientsAgainstTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the SDK test installs npm packages and runs Node")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the official OpenAI and Anthropic SDK test needs Node.js 20 or later (and npm)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "make", "-s", "node-sdk")
	install.Dir = root
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("make node-sdk: %v\n%s", err, out)
	}
	api, admin := startDemo(t)

	script := exec.CommandContext(ctx, node, filepath.Join(root, "test/node/sdk.cjs"))
	script.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(root, "bin/node-sdk/node_modules"),
		"IGW_BASE_URL=http://"+api, "IGW_MODEL="+demoModel)
	var stdout, stderr bytes.Buffer
	script.Stdout, script.Stderr = &stdout, &stderr
	err = script.Run()
	t.Logf("sdk.cjs:\n%s%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("sdk.cjs: %v", err)
	}
	passed := 0
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "ok ") {
			passed++
		}
	}
	if passed < 16 {
		t.Fatalf("%d checks passed, want 16", passed)
	}

	// The usage of an Anthropic stream reaches the gateway's token
	// metrics: input tokens from message_start, output from message_delta.
	before := tokenCounts(t, admin)
	resp, err := http.Post("http://"+api+"/v1/messages", "application/json", strings.NewReader(
		`{"model":"`+demoModel+`","max_tokens":7,"ignore_eos":true,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, start, _ := strings.Cut(string(body), "event: message_start\ndata: ")
	start, _, _ = strings.Cut(start, "\n")
	var ms struct {
		Message struct {
			Usage struct {
				InputTokens int `json:"input_tokens"`
			} `json:"usage"`
		} `json:"message"`
	}
	if err := json.Unmarshal([]byte(start), &ms); err != nil || ms.Message.Usage.InputTokens == 0 {
		t.Fatalf("message_start %q (%v)", start, err)
	}
	after := tokenCounts(t, admin)
	if in, out := after["input"]-before["input"], after["output"]-before["output"]; in != float64(ms.Message.Usage.InputTokens) || out != 7 {
		t.Fatalf("igw_tokens_total grew by %v input and %v output, want %d and 7", in, out, ms.Message.Usage.InputTokens)
	}
}

// tokenCounts is igw_tokens_total by type (input, output, cached), summed
// over models and pools.
func tokenCounts(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range fams["igw_tokens_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "type" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
