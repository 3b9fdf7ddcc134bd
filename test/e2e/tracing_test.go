package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testtool"
	"github.com/igw-dev/igw/pkg/director"
)

// jaegerTool is Jaeger all-in-one, built from its Go module by `make
// jaeger` into bin/.
func jaegerTool() testtool.Tool {
	return testtool.Tool{Name: "jaeger", Env: "IGW_JAEGER", Install: "`make jaeger` (builds github.com/jaegertracing/jaeger/cmd/jaeger into bin/)"}
}

// jaeger is a running Jaeger all-in-one with in-memory storage.
type jaeger struct {
	otlpGRPC, otlpHTTP string // host:port of the OTLP receivers
	query              string // base URL of the query service
}

// startJaeger runs Jaeger all-in-one on loopback ports of its own: OTLP
// over gRPC and HTTP in, the query API out, spans kept in memory.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerTool().Path(t)
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t)) }
	j := &jaeger{otlpGRPC: port(), otlpHTTP: port()}
	queryHTTP, queryGRPC := port(), port()
	j.query = "http://" + queryHTTP
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 50ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, queryHTTP, queryGRPC, j.otlpGRPC, j.otlpHTTP)
	dir := t.TempDir()
	path := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testtool.Start(t, dir, bin, "--config", path)
	client := newClient()
	p.WaitUntil(t, 60*time.Second, func() error {
		resp, err := client.Get(j.query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/api/services: %s", resp.Status)
		}
		// The OTLP receivers listen too.
		for _, a := range []string{j.otlpGRPC, j.otlpHTTP} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	return j
}

// jaegerSpan is a span as Jaeger's query API (/api/traces) returns it.
type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

func (s *jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s *jaegerSpan) tag(key string) (string, bool) {
	for _, tg := range s.Tags {
		if tg.Key == key {
			return fmt.Sprint(tg.Value), true
		}
	}
	return "", false
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// trace fetches one trace by id, waiting until it has at least minSpans
// spans (the exporters batch).
func (j *jaeger) trace(t *testing.T, id string, minSpans int) *jaegerTrace {
	t.Helper()
	client := newClient()
	var got *jaegerTrace
	eventually(t, 30*time.Second, func() error {
		resp, err := client.Get(j.query + "/api/traces/" + id)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data []jaegerTrace `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("trace %s: %s: %w", id, resp.Status, err)
		}
		if len(body.Data) != 1 || len(body.Data[0].Spans) < minSpans {
			n := 0
			if len(body.Data) > 0 {
				n = len(body.Data[0].Spans)
			}
			return fmt.Errorf("trace %s: %d spans so far, want %d", id, n, minSpans)
		}
		got = &body.Data[0]
		return nil
	})
	return got
}

// traceparentsOf reads the traceparents an igw sim replica received.
func traceparentsOf(t *testing.T, addr string) []string {
	t.Helper()
	resp, err := newClient().Get("http://" + addr + "/debug/traceparents")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tps []string
	if err := json.NewDecoder(resp.Body).Decode(&tps); err != nil {
		t.Fatal(err)
	}
	return tps
}

// TestTracing_SpanTreeInJaeger runs igw serve (exporting over OTLP/gRPC)
// and igw epp behind Envoy's ext_proc protocol (over OTLP/HTTP) with
// tracing on, in front of igw sim processes, and a real Jaeger. For each
// plane a request that carries a client's traceparent must show up in
// Jaeger as that trace: the request's span a child of the client's, with
// children for parse, admission, scheduling (chosen endpoint, candidates'
// scores) and the upstream attempt, whose children are the wait for the
// first byte and the completion; the GenAI attributes on the request's
// span; and the model server must have received a traceparent naming the
// attempt's span. A malformed traceparent starts a new trace.
func TestTracing_SpanTreeInJaeger(t *testing.T) {
	j := startJaeger(t)
	_, addrs := startSimProc(t, "igw sim", 2, "--model", testModel, "--time-scale", "20")
	path := obsConfig(t, addrs)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // ms: spans reach Jaeger soon after the request
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+j.otlpGRPC)
	_, api, _ := startServeProc(t, path)
	serve := plane{name: "igw serve", base: "http://" + api}

	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+j.otlpHTTP)
	epp, _ := startEppPlane(t, path, obsPool)

	client := newClient()
	for i, pl := range []struct {
		plane
		service string
	}{{serve, "igw"}, {epp, "igw-epp"}} {
		t.Run(strings.TrimPrefix(pl.name, "igw "), func(t *testing.T) {
			warmUp(t, client, pl.plane)
			ctx := withTimeout(t, 60*time.Second)
			traceID := fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i+1)
			clientSpan := fmt.Sprintf("00f067aa0ba902b%d", i+1)
			const outTokens = 6
			body := chat{Model: testModel, User: text(uint64(40+i), 200), MaxTokens: outTokens, IgnoreEOS: true, Stream: true, Usage: true}.body()
			r := post(ctx, client, pl.base+"/v1/chat/completions", body, map[string]string{"traceparent": "00-" + traceID + "-" + clientSpan + "-01"})
			if r.Err != nil || r.Status != http.StatusOK {
				t.Fatalf("traced request: %s", r)
			}
			tr := j.trace(t, traceID, 7)
			byName := map[string]*jaegerSpan{}
			for k := range tr.Spans {
				s := &tr.Spans[k]
				if byName[s.OperationName] != nil {
					t.Errorf("two %s spans in one request's trace", s.OperationName)
				}
				byName[s.OperationName] = s
			}
			root := byName[director.SpanRequest]
			if root == nil {
				t.Fatalf("no %s span in trace %s: %v", director.SpanRequest, traceID, slices.Collect(func(yield func(string) bool) {
					for n := range byName {
						if !yield(n) {
							return
						}
					}
				}))
			}
			if got := tr.Processes[root.ProcessID].ServiceName; got != pl.service {
				t.Errorf("service %q, want %q", got, pl.service)
			}
			if root.parent() != clientSpan {
				t.Errorf("%s's parent is %q, want the client's span %s", director.SpanRequest, root.parent(), clientSpan)
			}
			parents := map[string]string{
				director.SpanParse: director.SpanRequest, director.SpanAdmission: director.SpanRequest,
				director.SpanSchedule: director.SpanRequest, director.SpanUpstream: director.SpanRequest,
				director.SpanFirstByte: director.SpanUpstream, director.SpanCompletion: director.SpanUpstream,
			}
			for child, parent := range parents {
				c, p := byName[child], byName[parent]
				if c == nil || p == nil {
					t.Errorf("span %s or %s missing", child, parent)
					continue
				}
				if c.parent() != p.SpanID {
					t.Errorf("%s's parent is %s, want %s (%s)", child, c.parent(), parent, p.SpanID)
				}
			}
			wantTags := map[string]string{
				"gen_ai.operation.name": "chat", "gen_ai.request.model": testModel, "gen_ai.response.model": testModel,
				"gen_ai.usage.output_tokens": strconv.Itoa(outTokens), "server.address": "127.0.0.1",
				"http.response.status_code": "200",
			}
			for k, want := range wantTags {
				if got, ok := root.tag(k); !ok || got != want {
					t.Errorf("%s %s = %q, want %q", director.SpanRequest, k, got, want)
				}
			}
			if got, _ := root.tag("gen_ai.usage.input_tokens"); got == "" || got == "0" {
				t.Errorf("gen_ai.usage.input_tokens = %q, want the prompt's tokens", got)
			}
			if t.Failed() {
				return
			}
			sched := byName[director.SpanSchedule]
			chosen, _ := sched.tag("igw.endpoint")
			if !slices.Contains(addrs, chosen) {
				t.Errorf("scheduling span: igw.endpoint %q is not a replica of %v", chosen, addrs)
			}
			for _, k := range []string{"igw.candidate.0.endpoint", "igw.candidate.0.score", "igw.candidate.1.score", "igw.scorers"} {
				if _, ok := sched.tag(k); !ok {
					t.Errorf("scheduling span has no %s", k)
				}
			}
			up := byName[director.SpanUpstream]
			if port, _ := up.tag("server.port"); !strings.HasSuffix(chosen, ":"+port) {
				t.Errorf("upstream span server.port %q, scheduled %s", port, chosen)
			}
			// The model server got the trace, as a child of the attempt.
			want := "00-" + traceID + "-" + up.SpanID + "-01"
			if tps := traceparentsOf(t, chosen); !slices.Contains(tps, want) {
				t.Errorf("%s did not receive traceparent %s; it got %v", chosen, want, tps)
			}

			// A malformed traceparent: served, in a new trace the model
			// server is told about.
			before := map[string]int{}
			for _, a := range addrs {
				before[a] = len(traceparentsOf(t, a))
			}
			r = post(ctx, client, pl.base+"/v1/chat/completions", chat{Model: testModel, User: "hello", MaxTokens: 2}.body(),
				map[string]string{"traceparent": "00-not-a-trace-01"})
			if r.Err != nil || r.Status != http.StatusOK {
				t.Fatalf("request with a malformed traceparent: %s", r)
			}
			var fresh string
			for _, a := range addrs {
				if tps := traceparentsOf(t, a); len(tps) > before[a] {
					fresh = tps[len(tps)-1]
				}
			}
			parts := strings.Split(fresh, "-")
			if len(parts) != 4 || len(parts[1]) != 32 || parts[1] == traceID {
				t.Fatalf("after a malformed traceparent the model server got %q, want a new trace's", fresh)
			}
			j.trace(t, parts[1], 7)
		})
	}
}
