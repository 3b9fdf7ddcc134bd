package extproc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkDecision asserts the invariants of every decision: the header and
// the metadata carry the same list, every entry is one of the pool's
// endpoints, the route cache is cleared.
func (e *pickerEnv) checkDecision(t *testing.T, res *envoytest.Result) []string {
	t.Helper()
	if res.Immediate != nil {
		t.Fatalf("rejected: %d %s", res.Status(), res.Immediate.GetBody())
	}
	hdr := res.RequestHeaders[extproc.HeaderDestinationEndpoint]
	md := res.MetadataString(extproc.MetadataNamespaceLB, extproc.HeaderDestinationEndpoint)
	if hdr == "" || hdr != md {
		t.Fatalf("destination header %q and metadata %q must be equal and set", hdr, md)
	}
	if !res.ClearRouteCache {
		t.Error("clear_route_cache not set")
	}
	list := strings.Split(hdr, ",")
	for _, a := range list {
		if !slices.Contains(e.addrs, a) {
			t.Errorf("destination %q is not a pool endpoint (%v)", a, e.addrs)
		}
	}
	return list
}

// metric is the value of the picker's counter name with label=value (and
// any other labels).
func (e *pickerEnv) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.rt.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestPicker_FullDuplexChunked5MiB(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	body := chatRequest(baseModel, strings.Repeat("All work and no play makes Jack a dull boy. ", 5<<20/44), false)
	res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: body, ChunkSize: 16 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list := e.checkDecision(t, res)
	if len(list) != 3 {
		t.Errorf("want the primary and 2 fallbacks, got %v", list)
	}
	if !bytes.Equal(res.Body, body) {
		t.Errorf("body changed: %d bytes forwarded, %d sent", len(res.Body), len(body))
	}
	for i, c := range res.BodyChunks {
		if len(c) >= 62000 {
			t.Fatalf("chunk %d has %d bytes", i, len(c))
		}
	}
	if len(res.BodyChunks) < len(body)/62000 {
		t.Errorf("only %d chunks", len(res.BodyChunks))
	}
	if _, ok := res.SetRequestHeaders["content-length"]; ok {
		t.Error("content-length set although the body did not change")
	}
}

func TestPicker_BodyOverLimitIs413(t *testing.T) {
	e := newPickerEnv(t, envOptions{replicas: 1})
	body := bytes.Repeat([]byte("x"), extproc.DefaultMaxBodyBytes+1)
	res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: body, ChunkSize: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status() != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", res.Status())
	}
}

func TestPicker_BufferedMode(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	for _, announced := range []bool{true, false} {
		t.Run(fmt.Sprintf("protocol_config=%v", announced), func(t *testing.T) {
			if !announced { // the picker must be told the mode Envoy uses
				p, err := extproc.NewPicker(extproc.PickerOptions{Director: e.rt.Director(), Pool: e.rt.Pool(), DefaultBodyMode: extproc.BodyModeBuffered})
				if err != nil {
					t.Fatal(err)
				}
				e = &pickerEnv{fleet: e.fleet, rt: e.rt, addrs: e.addrs, conn: serveGRPC(t, extproc.NewGRPCServer(p, 0, nil))}
			}
			body := chatRequest(alias, "hello", false)
			res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: body, Mode: envoytest.Buffered, NoProtocolConfig: !announced}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.checkDecision(t, res)
			want := chatRequest(baseModel, "hello", false)
			if !bytes.Equal(res.Body, want) {
				t.Errorf("forwarded body %s, want %s", res.Body, want)
			}
			if got := res.RequestHeaders["content-length"]; got != fmt.Sprint(len(want)) {
				t.Errorf("content-length %s, want %d", got, len(want))
			}
		})
	}
}

func TestPicker_HeaderOnlyRequests(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	for _, mode := range []envoytest.Mode{envoytest.FullDuplex, envoytest.Buffered} {
		t.Run(mode.String(), func(t *testing.T) {
			res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: map[string]string{":method": "GET", ":path": "/v1/models"}, Mode: mode}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if list := e.checkDecision(t, res); len(list) != 3 {
				t.Errorf("GET /v1/models: want 3 endpoints, got %v", list)
			}
			res, err = envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Mode: mode}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status() != http.StatusBadRequest || !bytes.Contains(res.Immediate.GetBody(), []byte("must name a model")) {
				t.Errorf("header-only chat completion: %d %s, want 400 missing model", res.Status(), res.Immediate.GetBody())
			}
		})
	}
	if n := e.inFlight(); n != 0 {
		t.Errorf("in flight %d after the streams ended", n)
	}
}

// The whole Envoy sequence against a real model server: the request phase
// decides, the request goes to the chosen replica, the SSE stream comes back
// through the picker chunk by chunk.
func TestPicker_StreamedSSEUsageAndModelRewrite(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	ctx := ctxT(t)
	s, err := envoytest.Start(ctx, e.conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(alias, "Tell me a story", true, `"ignore_eos":true`)})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Result()
	e.checkDecision(t, res)
	if !bytes.Contains(res.Body, []byte(`"model":"`+baseModel+`"`)) {
		t.Fatalf("request body not rewritten to the target model: %s", res.Body)
	}
	if got := res.RequestHeaders["content-length"]; got != fmt.Sprint(len(res.Body)) {
		t.Errorf("content-length %s, want %d", got, len(res.Body))
	}
	if n := e.inFlight(); n != 1 {
		t.Errorf("in flight %d while the request is out, want 1", n)
	}
	upstream := forward(t, res, "/v1/chat/completions")
	if upstream.Status != 200 || !strings.HasPrefix(upstream.Headers["content-type"], "text/event-stream") {
		t.Fatalf("model server answered %d %v", upstream.Status, upstream.Headers)
	}
	// Every chunk is forwarded before the next one is sent.
	sent := 0
	upstream.OnChunk = func(i int, forwarded []byte) {
		sent += len(upstream.Chunks[i])
		if i < len(upstream.Chunks)-1 && len(forwarded) == 0 {
			t.Errorf("chunk %d not forwarded before the next", i)
		}
	}
	if err := s.Respond(upstream); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := string(res.ResponseBody)
	if strings.Contains(out, baseModel) || !strings.Contains(out, `"model":"chat"`) || !strings.Contains(out, "data: [DONE]") {
		t.Errorf("response not rewritten back to the requested model:\n%s", out)
	}
	if _, ok := res.ResponseHeaders["content-length"]; ok {
		t.Error("content-length kept although the body changed")
	}
	if n := e.inFlight(); n != 0 {
		t.Errorf("in flight %d after the response, want 0", n)
	}
	if v := e.metric(t, "igw_requests_total", "code", "200"); v != 1 {
		t.Errorf("requests{code=200} = %v, want 1", v)
	}
	if v := e.metric(t, "igw_tokens_total", "type", "output"); v != 8 {
		t.Errorf("output tokens = %v, want 8 (max_tokens, ignore_eos)", v)
	}
}

func TestPicker_JSONResponseRewrittenBack(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	for _, mode := range []envoytest.Mode{envoytest.FullDuplex, envoytest.Buffered} {
		t.Run(mode.String(), func(t *testing.T) {
			s, err := envoytest.Start(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(alias, "hi", false), Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			res := s.Result()
			e.checkDecision(t, res)
			upstream := forward(t, res, "/v1/chat/completions")
			upstream.Headers["content-length"] = fmt.Sprint(len(bytes.Join(upstream.Chunks, nil)))
			if err := s.Respond(upstream); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Model string `json:"model"`
				Usage struct {
					CompletionTokens int `json:"completion_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(res.ResponseBody, &got); err != nil || got.Model != alias {
				t.Fatalf("response model %q (%v), want %q: %s", got.Model, err, alias, res.ResponseBody)
			}
			cl, hasCL := res.ResponseHeaders["content-length"]
			switch {
			case mode == envoytest.Buffered && cl != fmt.Sprint(len(res.ResponseBody)):
				t.Errorf("buffered: content-length %q, want %d", cl, len(res.ResponseBody))
			case mode == envoytest.FullDuplex && hasCL:
				t.Errorf("full duplex: content-length %q kept", cl)
			}
		})
	}
	if n := e.inFlight(); n != 0 {
		t.Errorf("in flight %d, want 0", n)
	}
}

func TestPicker_Rejections(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	other, err := extproc.NewPicker(extproc.PickerOptions{Director: e.rt.Director(), Pool: "default/missing"})
	if err != nil {
		t.Fatal(err)
	}
	otherConn := serveGRPC(t, extproc.NewGRPCServer(other, 0, nil))
	for _, tc := range []struct {
		name     string
		body     string
		metadata bool // empty subset hint
		unknown  bool // picker for a pool that does not exist
		status   int
		reason   string
		message  string
	}{
		{name: "bad JSON", body: `{"model":`, status: 400, message: "not valid JSON"},
		{name: "not an object", body: `[1,2]`, status: 400},
		{name: "wrong type", body: `{"model":7}`, status: 400, message: "model"},
		{name: "missing model", body: `{"messages":[]}`, status: 400, message: "must name a model"},
		{name: "empty subset", body: string(chatRequest(baseModel, "x", false)), metadata: true, status: 503, reason: director.ReasonNoEndpoints},
		{name: "unknown pool", body: string(chatRequest(baseModel, "x", false)), unknown: true, status: 503, reason: director.ReasonNoEndpoints},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &envoytest.Request{Headers: chatHeaders(), Body: []byte(tc.body)}
			if tc.metadata {
				req.Metadata = envoytest.SubsetHint()
			}
			conn := e.conn
			if tc.unknown {
				conn = otherConn
			}
			res, err := envoytest.Exchange(ctxT(t), conn, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status() != tc.status {
				t.Fatalf("status %d, want %d: %s", res.Status(), tc.status, res.Immediate.GetBody())
			}
			if got := res.ImmediateHeader(director.DroppedReasonHeader); got != tc.reason {
				t.Errorf("reason header %q, want %q", got, tc.reason)
			}
			if ct := res.ImmediateHeader("content-type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			var body struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(res.Immediate.GetBody(), &body); err != nil || body.Error.Type == "" || !strings.Contains(body.Error.Message, tc.message) {
				t.Errorf("error body %s (%v)", res.Immediate.GetBody(), err)
			}
		})
	}
}

// A sheddable request (objective with negative priority) is refused with 429
// while the only replica has a long waiting queue.
func TestPicker_ShedWhenSaturated(t *testing.T) {
	scfg := sim.DefaultConfig()
	scfg.Port, scfg.Replicas, scfg.TimeScale, scfg.Model, scfg.MaxNumSeqs = 0, 1, 1, baseModel, 1
	fleet, err := sim.StartFleet(scfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		c, cc := context.WithTimeout(context.Background(), 5*time.Second)
		defer cc()
		_ = fleet.Close(c)
		wg.Wait()
	})
	// Saturated at five waiting (the default, 0, would hold the priority-0
	// request below until every slot of the one replica is free again).
	cfg, err := engine.Schema().Parse("pool.yaml", []byte(configFor(fleet.Addrs())+
		"---\napiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nsaturationDetector: {queueDepthThreshold: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := engine.New(cfg, engine.Options{Pool: true})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = rt.Run(ctx) }()
	p, _ := extproc.NewPicker(extproc.PickerOptions{Director: rt.Director(), Pool: rt.Pool()})
	conn := serveGRPC(t, extproc.NewGRPCServer(p, 0, nil))
	waitFor(t, "the replica schedulable", func() bool { return schedulable(rt) == 1 })

	// Fill the replica: one running, six waiting, each for a few seconds.
	for range 7 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+fleet.Addrs()[0]+"/v1/chat/completions",
				bytes.NewReader(chatRequest(baseModel, "busy", false, `"max_tokens":1000`, `"ignore_eos":true`)))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "a waiting queue of 5", func() bool {
		m := rt.Store().Pool(rt.Pool()).Endpoints[0].Metrics()
		return m != nil && m.WaitingQueueSize >= 5
	})
	shed, err := envoytest.Exchange(ctxT(t), conn, &envoytest.Request{Headers: chatHeaders(extproc.HeaderInferenceObjective, "batch"), Body: chatRequest(baseModel, "x", false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if shed.Status() != http.StatusTooManyRequests || shed.ImmediateHeader(director.DroppedReasonHeader) != director.ReasonSaturated {
		t.Fatalf("sheddable request: %d reason %q, want 429 %s", shed.Status(), shed.ImmediateHeader(director.DroppedReasonHeader), director.ReasonSaturated)
	}
	if shed.ImmediateHeader("retry-after") == "" {
		t.Error("no retry-after on 429")
	}
	// A request of priority 0 is still scheduled.
	res, err := envoytest.Exchange(ctxT(t), conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(baseModel, "x", false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Immediate != nil {
		t.Fatalf("priority-0 request rejected: %d", res.Status())
	}
}

func TestPicker_RoutingHeadersAndSubsetHint(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	spoof := "10.0.0.66:8000"
	for _, mode := range []envoytest.Mode{envoytest.FullDuplex, envoytest.Buffered} {
		t.Run(mode.String(), func(t *testing.T) {
			h := chatHeaders(extproc.HeaderDestinationEndpoint, spoof, extproc.HeaderDestinationServed, spoof)
			res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: h, Body: chatRequest(baseModel, "x", false), Mode: mode}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if list := e.checkDecision(t, res); slices.Contains(list, spoof) {
				t.Errorf("client-sent destination used: %v", list)
			}
			if _, ok := res.RequestHeaders[extproc.HeaderDestinationServed]; ok {
				t.Error("client-sent served header forwarded")
			}

			for _, subset := range [][]string{{e.addrs[1]}, {e.addrs[2], e.addrs[0]}} {
				res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: h, Body: chatRequest(baseModel, "x", false), Mode: mode, Metadata: envoytest.SubsetHint(subset...)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				list := e.checkDecision(t, res)
				slices.Sort(list)
				want := slices.Sorted(slices.Values(subset))
				if !slices.Equal(list, want) {
					t.Errorf("subset %v: decision %v", subset, list)
				}
			}
		})
	}
}

// Envoy reports that it served the request from a fallback: the in-flight
// count moves from the primary to that fallback, and ends at 0.
func TestPicker_ServedEndpointFromMetadata(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	s, err := envoytest.Start(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(baseModel, "x", false)})
	if err != nil {
		t.Fatal(err)
	}
	list := e.checkDecision(t, s.Result())
	primary, fallback := list[0], list[1]
	byAddr := map[string]int64{}
	count := func() {
		clear(byAddr)
		for _, ep := range e.rt.Store().Pool(e.rt.Pool()).Endpoints {
			byAddr[ep.Address] = ep.InFlight()
		}
	}
	count()
	if byAddr[primary] != 1 || byAddr[fallback] != 0 {
		t.Fatalf("before the response: %v", byAddr)
	}
	err = s.Respond(&envoytest.Response{
		Status: 200, Headers: map[string]string{"content-type": "application/json"}, Metadata: envoytest.Served(fallback),
		Chunks: [][]byte{[]byte(`{"model":"x","usage":{"prompt_tokens":3,`), []byte(`"completion_tokens":2}}`)},
		OnChunk: func(i int, _ []byte) {
			if i == 0 {
				count()
				if byAddr[primary] != 0 || byAddr[fallback] != 1 {
					t.Errorf("during the response: %v (primary %s, served %s)", byAddr, primary, fallback)
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := e.inFlight(); n != 0 {
		t.Errorf("in flight %d, want 0", n)
	}
}

// A stream Envoy abandons (client gone) releases the in-flight count.
func TestPicker_AbandonedStreamReleasesInFlight(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := envoytest.Start(ctx, e.conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(baseModel, "x", false)}); err != nil {
		t.Fatal(err)
	}
	if n := e.inFlight(); n != 1 {
		t.Fatalf("in flight %d, want 1", n)
	}
	cancel()
	waitFor(t, "in-flight released", func() bool { return e.inFlight() == 0 })
}

func TestPicker_RequestTrailers(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	body := chatRequest(baseModel, "x", false)
	for _, mode := range []envoytest.Mode{envoytest.FullDuplex, envoytest.Buffered} {
		t.Run(mode.String(), func(t *testing.T) {
			res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: body, ChunkSize: 10, Mode: mode, Trailers: map[string]string{"x-checksum": "1"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.checkDecision(t, res)
			if !bytes.Equal(res.Body, body) {
				t.Errorf("body %s", res.Body)
			}
		})
	}
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// stableAddrs names endpoints by order of appearance, so that golden
// transcripts do not depend on ports or on how ties were broken.
func stableAddrs(s string) string {
	seen := map[string]string{}
	return addrRE.ReplaceAllStringFunc(s, func(a string) string {
		if _, ok := seen[a]; !ok {
			seen[a] = fmt.Sprintf("<endpoint-%c>", 'A'+len(seen))
		}
		return seen[a]
	})
}

func TestPicker_GoldenTranscripts(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	sse := [][]byte{
		[]byte(`data: {"id":"1","object":"chat.completion.chunk","model":"` + baseModel + `","choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n"),
		[]byte(`data: {"id":"1","object":"chat.completion.chunk","mod`),
		[]byte(`el":"` + baseModel + `","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}` + "\n\ndata: [DONE]\n\n"),
	}
	for _, tc := range []struct {
		name string
		req  *envoytest.Request
		resp *envoytest.Response
	}{
		{"full_duplex_sse_rewrite", &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(alias, "hi", true), ChunkSize: 40},
			&envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "text/event-stream"}, Chunks: sse}},
		{"buffered_json", &envoytest.Request{Headers: chatHeaders(extproc.HeaderDestinationEndpoint, "10.1.1.1:80"), Body: chatRequest(baseModel, "hi", false), Mode: envoytest.Buffered},
			&envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"}, Chunks: [][]byte{[]byte(`{"model":"` + baseModel + `","usage":{"prompt_tokens":1,"completion_tokens":1}}`)}}},
		{"header_only_get", &envoytest.Request{Headers: map[string]string{":method": "GET", ":path": "/v1/models"}},
			&envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"}}},
		{"missing_model", &envoytest.Request{Headers: chatHeaders(), Body: []byte(`{"messages":[]}`)}, nil},
		{"empty_subset", &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(baseModel, "hi", false), Metadata: envoytest.SubsetHint()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := envoytest.Exchange(ctxT(t), e.conn, tc.req, tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "picker_"+tc.name, stableAddrs(strings.Join(res.Transcript(), "\n")+"\n"))
		})
	}
}

func TestPoolRuntime_Reload(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	// Without the rewrite, "chat" reaches the servers unchanged.
	text := configFor(e.addrs)
	text = text[:strings.Index(text, "---\napiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite")]
	cfg, err := engine.Schema().Parse("pool.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	res, err := envoytest.Exchange(ctxT(t), e.conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest(alias, "x", false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.checkDecision(t, res)
	if !bytes.Equal(res.Body, chatRequest(alias, "x", false)) {
		t.Errorf("body rewritten after the rewrite was removed: %s", res.Body)
	}
	// A file without the pool is refused.
	other, err := engine.Schema().Parse("other.yaml", []byte(strings.ReplaceAll(text, "name: llm", "name: other")))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Reload(other); err == nil || !strings.Contains(err.Error(), "default/llm") {
		t.Errorf("reload without the pool: %v", err)
	}
}

func TestNewPoolRuntime_ChoosesPool(t *testing.T) {
	text := configFor([]string{"127.0.0.1:1"})
	cfg, err := engine.Schema().Parse("pool.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := engine.New(cfg, engine.Options{Pool: true})
	if err != nil || rt.Pool() != "default/llm" {
		t.Fatalf("only pool: %v %v", rt, err)
	}
	if _, err := engine.New(cfg, engine.Options{Pool: true, PoolName: "nope"}); err == nil || !strings.Contains(err.Error(), "default/llm") {
		t.Errorf("unknown pool: %v", err)
	}
	if rt.Ready() {
		t.Error("ready before any scrape")
	}
}
