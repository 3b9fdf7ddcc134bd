package sim

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/openai"
)

func TestServer_EmbeddingsAreDeterministicUnitVectors(t *testing.T) {
	f := startFleet(t, nil)
	resp, body := post(t, f.Addrs()[0], "/v1/embeddings", `{"model":"m","input":["hello world","hello world","other"],"dimensions":64}`)
	var list openai.EmbeddingList
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Data) != 3 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	vec := func(i int) []float64 {
		var v []float64
		raw, _ := json.Marshal(list.Data[i].Embedding)
		_ = json.Unmarshal(raw, &v)
		return v
	}
	a, b, c := vec(0), vec(1), vec(2)
	norm := 0.0
	for _, x := range a {
		norm += x * x
	}
	if len(a) != 64 || math.Abs(norm-1) > 1e-5 || a[0] != b[0] || a[0] == c[0] {
		t.Fatalf("len %d norm %v, equal inputs equal %v, different inputs differ %v", len(a), norm, a[0] == b[0], a[0] != c[0])
	}
	if list.Usage.PromptTokens != 5 || list.Usage.TotalTokens != 5 {
		t.Fatalf("usage %+v", list.Usage)
	}
	// base64: the same vector as little-endian float32s.
	_, body = post(t, f.Addrs()[0], "/v1/embeddings", `{"model":"m","input":"hello world","dimensions":64,"encoding_format":"base64"}`)
	_ = json.Unmarshal(body, &list)
	s, _ := list.Data[0].Embedding.(string)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 4*64 || math.Float32frombits(uint32(raw[0])|uint32(raw[1])<<8|uint32(raw[2])<<16|uint32(raw[3])<<24) != float32(a[0]) {
		t.Fatalf("base64 embedding %q (%v)", s, err)
	}
	if resp, _ := post(t, f.Addrs()[0], "/v1/embeddings", `{"model":"m","input":"x","dimensions":5000}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dimensions over the model's: %d", resp.StatusCode)
	}
}

func TestServer_ResponsesPlainAndStreamed(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 50 })
	req := `{"model":"m","instructions":"be brief","input":"hi","max_output_tokens":5,"ignore_eos":true`
	resp, body := post(t, f.Addrs()[0], "/v1/responses", req+`}`)
	var r openai.Response
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil || r.Object != "response" || r.Status != "incomplete" ||
		r.Usage == nil || r.Usage.OutputTokens != 5 || r.Usage.InputTokens == 0 || len(r.Output) != 1 || r.Output[0].Content[0].Text == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = post(t, f.Addrs()[0], "/v1/responses", req+`,"stream":true}`)
	var types []string
	var deltas strings.Builder
	for _, ev := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		_, data, _ := strings.Cut(ev, "data: ")
		var e struct {
			Type     string `json:"type"`
			Seq      int    `json:"sequence_number"`
			Delta    string `json:"delta"`
			Response *openai.Response
		}
		if err := json.Unmarshal([]byte(data), &e); err != nil || e.Seq != len(types) || !strings.HasPrefix(ev, "event: "+e.Type+"\n") {
			t.Fatalf("event %q (%v)", ev, err)
		}
		types = append(types, e.Type)
		deltas.WriteString(e.Delta)
		if e.Response != nil && e.Response.Usage != nil && e.Response.Usage.OutputTokens != 5 {
			t.Fatalf("final usage %+v", e.Response.Usage)
		}
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		strings.Repeat("response.output_text.delta ", 5) +
		"response.output_text.done response.content_part.done response.output_item.done response.incomplete"
	if got := strings.Join(types, " "); got != want || deltas.String() != r.Output[0].Content[0].Text {
		t.Fatalf("events %s\nwant   %s\ntext %q vs %q", got, want, deltas.String(), r.Output[0].Content[0].Text)
	}
	_ = resp
}

func TestServer_AnthropicMessages(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 50 })
	req := `{"model":"m","system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4,"ignore_eos":true`
	resp, body := post(t, f.Addrs()[0], "/v1/messages", req+`}`)
	var m openai.AnthropicMessage
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &m) != nil || m.Type != "message" || *m.StopReason != "max_tokens" ||
		m.Usage.OutputTokens != 4 || m.Usage.InputTokens == 0 || m.Content[0].Text == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, body = post(t, f.Addrs()[0], "/v1/messages", req+`,"stream":true}`)
	o := openai.NewUsageObserver("text/event-stream")
	_, _ = o.Write(body)
	if u, ok := o.Usage(); !ok || !o.Done() || u.PromptTokens != m.Usage.InputTokens || u.CompletionTokens != 4 {
		t.Fatalf("stream usage %+v %v done %v:\n%s", u, ok, o.Done(), body)
	}
	for _, ev := range []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"} {
		if !strings.Contains(string(body), "event: "+ev+"\n") {
			t.Fatalf("no %s event in\n%s", ev, body)
		}
	}
	resp, body = post(t, f.Addrs()[0], "/v1/messages", `{"model":"nope","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"type":"error"`) || !strings.Contains(string(body), `"not_found_error"`) {
		t.Fatalf("unknown model: %d %s", resp.StatusCode, body)
	}
}

func TestServer_TokenizeDetokenizeAndModelByID(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.LoRAModules = []string{"org/adapter"} })
	addr := f.Addrs()[0]
	_, body := post(t, addr, "/tokenize", `{"model":"m","prompt":"Hello, world!"}`)
	var tok openai.TokenizeResponse
	if json.Unmarshal(body, &tok) != nil || tok.Count != 4 || len(tok.Tokens) != 4 || tok.MaxModelLen == 0 {
		t.Fatalf("tokenize %s", body)
	}
	ids, _ := json.Marshal(tok.Tokens)
	_, body = post(t, addr, "/detokenize", `{"model":"m","tokens":`+string(ids)+`}`)
	var de openai.DetokenizeResponse
	if json.Unmarshal(body, &de) != nil || de.Prompt != "Hello, world!" {
		t.Fatalf("detokenize %s", body)
	}
	if resp, _ := post(t, addr, "/detokenize", `{"tokens":[7]}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown token id: %d", resp.StatusCode)
	}
	for id, status := range map[string]int{"m": 200, "org/adapter": 200, "nope": 404} {
		resp, err := http.Get("http://" + addr + "/v1/models/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var mdl openai.Model
		_ = json.NewDecoder(resp.Body).Decode(&mdl)
		resp.Body.Close()
		if resp.StatusCode != status || (status == 200 && mdl.ID != id) {
			t.Errorf("GET /v1/models/%s: %d %+v", id, resp.StatusCode, mdl)
		}
	}
}
