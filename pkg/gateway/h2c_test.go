package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// h2cClient speaks HTTP/2 without TLS, with prior knowledge, and nothing
// else: a request over HTTP/1.1 would fail.
func h2cClient(t testing.TB) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Proxy: nil, Protocols: p, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func TestGateway_UnencryptedHTTP2ChatCompletionThroughTheSimulator(t *testing.T) {
	s := simGateway(t, startSim(t, 2, 50))
	c := h2cClient(t)
	for _, stream := range []bool{false, true} {
		body := `{"model":"llama","messages":[{"role":"user","content":"Hello over h2c"}],"max_tokens":8}`
		if stream {
			body = `{"model":"llama","messages":[{"role":"user","content":"Hello over h2c"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}`
		}
		resp, err := c.Post("http://"+s.Addr()+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("served over %s, want HTTP/2", resp.Proto)
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if stream {
			sum := readStream(t, resp.Body)
			if !sum.done || sum.usage == nil || sum.chunks == 0 {
				t.Fatalf("stream over h2c: %+v", sum)
			}
		} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"chat.completion"`) {
			t.Fatalf("answer: %s", b)
		}
		resp.Body.Close()
	}
}

// TestGateway_UnencryptedHTTP2SlowBodyGets408: the body deadlines hold on
// an HTTP/2 stream too.
func TestGateway_UnencryptedHTTP2SlowBodyGets408(t *testing.T) {
	s, f := frontGateway(t, "  timeouts: {bodyIdle: 300ms}\n")
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, "{") }() // then nothing
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/v1/chat/completions", pr)
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("%s %d: %s", resp.Proto, resp.StatusCode, b)
	}
	openAIError(t, string(b), http.StatusRequestTimeout)
	if f.hits.Load() != 0 {
		t.Fatal("a model server saw the request")
	}
}

func TestGateway_UnencryptedHTTP2CanBeTurnedOff(t *testing.T) {
	s, _ := frontGateway(t, "  unencryptedHTTP2: false\n")
	if _, err := h2cClient(t).Get("http://" + s.Addr() + "/v1/models"); err == nil {
		t.Fatal("an h2c request was served with unencryptedHTTP2: false")
	}
	if r := get(t, newClient(t), "http://"+s.Addr()+"/v1/models"); r.status != http.StatusOK {
		t.Fatalf("HTTP/1.1: %d", r.status)
	}
}
