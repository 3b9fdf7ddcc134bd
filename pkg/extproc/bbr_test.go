package extproc_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

const adaptersYAML = `# base models and their LoRA adapters
- baseModel: meta-llama/Llama-3.1-8B-Instruct
  adapters:
  - food-review
  - sql-lora
- baseModel: Qwen/Qwen2.5-7B-Instruct
  adapters: [support-bot]
`

func newRouter(t *testing.T, allowMissing bool) *grpc.ClientConn {
	t.Helper()
	m, err := datastore.ParseAdapterMap("adapters.yaml", []byte(adaptersYAML))
	if err != nil {
		t.Fatal(err)
	}
	r := extproc.NewBodyRouter(extproc.RouterOptions{Adapters: m, AllowMissingModel: allowMissing})
	return serveGRPC(t, extproc.NewGRPCServer(r, 0, nil))
}

func TestBodyRouter_SetsModelHeaders(t *testing.T) {
	conn := newRouter(t, false)
	for _, mode := range []envoytest.Mode{envoytest.FullDuplex, envoytest.Buffered} {
		for _, tc := range []struct{ model, base string }{
			{"food-review", baseModel},
			{"support-bot", "Qwen/Qwen2.5-7B-Instruct"},
			{baseModel, baseModel},
			{"unknown-model", ""},
		} {
			t.Run(mode.String()+"/"+tc.model, func(t *testing.T) {
				body := chatRequest(tc.model, strings.Repeat("hello ", 50000), false) // 300 KB in 4 KiB chunks
				h := chatHeaders("X-Gateway-Model-Name", "spoofed", "x-gateway-base-model-name", "spoofed")
				res, err := envoytest.Exchange(ctxT(t), conn, &envoytest.Request{Headers: h, Body: body, ChunkSize: 4096, Mode: mode}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.Immediate != nil {
					t.Fatalf("rejected: %s", res.Immediate.GetBody())
				}
				if got := res.RequestHeaders[extproc.HeaderModelName]; got != tc.model {
					t.Errorf("model header %q, want %q", got, tc.model)
				}
				got, ok := res.RequestHeaders[extproc.HeaderBaseModelName]
				if got != tc.base || ok != (tc.base != "") {
					t.Errorf("base model header %q (present %v), want %q", got, ok, tc.base)
				}
				if !res.ClearRouteCache {
					t.Error("clear_route_cache not set")
				}
				if !bytes.Equal(res.Body, body) {
					t.Error("body changed")
				}
			})
		}
	}
}

func TestBodyRouter_MissingModel(t *testing.T) {
	require, allow := newRouter(t, false), newRouter(t, true)
	for _, tc := range []struct {
		name string
		req  *envoytest.Request
	}{
		{"no model", &envoytest.Request{Headers: chatHeaders(), Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`), ChunkSize: 5}},
		{"not JSON", &envoytest.Request{Headers: chatHeaders(), Body: []byte(`model=llama`)}},
		{"buffered", &envoytest.Request{Headers: chatHeaders(), Body: []byte(`{}`), Mode: envoytest.Buffered}},
		{"header-only inference call", &envoytest.Request{Headers: chatHeaders()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Headers[extproc.HeaderModelName] = "spoofed"
			res, err := envoytest.Exchange(ctxT(t), require, tc.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status() != http.StatusBadRequest {
				t.Errorf("required: status %d, want 400", res.Status())
			}
			res, err = envoytest.Exchange(ctxT(t), allow, tc.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Immediate != nil {
				t.Fatalf("not required: rejected with %d", res.Status())
			}
			if _, ok := res.RequestHeaders[extproc.HeaderModelName]; ok {
				t.Error("client-sent model header forwarded")
			}
			if tc.req.Body != nil && !bytes.Equal(res.Body, tc.req.Body) {
				t.Errorf("body changed: %q", res.Body)
			}
		})
	}
	// A body-less GET is not an inference call: it passes either way.
	res, err := envoytest.Exchange(ctxT(t), require, &envoytest.Request{Headers: map[string]string{":method": "GET", ":path": "/v1/models"}}, nil)
	if err != nil || res.Immediate != nil {
		t.Fatalf("GET /v1/models: %v %v", err, res.Immediate)
	}
}

func TestBodyRouter_Golden(t *testing.T) {
	conn := newRouter(t, false)
	res, err := envoytest.Exchange(ctxT(t), conn, &envoytest.Request{Headers: chatHeaders(), Body: chatRequest("sql-lora", "hi", false), ChunkSize: 50},
		&envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"}, Chunks: [][]byte{[]byte(`{"model":"sql-lora"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bbr_full_duplex", strings.Join(res.Transcript(), "\n")+"\n")
}

func TestParseAdapterMap_Errors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"- baseModel: a\n  adaptors: [b]\n", "unknown field"},
		{"- adapters: [b]\n", "[0].baseModel: required"},
		{"- baseModel: a\n  adapters: [b]\n- baseModel: c\n  adapters: [b]\n", `adapter "b" is already mapped to "a"`},
		{"- baseModel: a\n  adapters: [c]\n- baseModel: c\n", `"c" is also a baseModel`},
		{"- baseModel: a\n- baseModel: a\n", "listed twice"},
		{"- baseModel: a\n  adapters: ['']\n", "empty adapter name"},
	} {
		_, err := datastore.ParseAdapterMap("adapters.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "adapters.yaml: ") {
			t.Errorf("%q: error %v, want one naming the file and containing %q", tc.yaml, err, tc.want)
		}
	}
}
