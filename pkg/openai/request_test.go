package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseRequest_Chat(t *testing.T) {
	body := []byte(`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],` +
		`"model":"llama","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"max_completion_tokens":70}`)
	p, err := ParseRequest(KindChat, body)
	if err != nil {
		t.Fatal(err)
	}
	if p.Model != "llama" || !p.Stream || !p.IncludeUsage || p.MaxTokens != 70 {
		t.Fatalf("%+v", p)
	}
	if got := string(p.Prompt); got != "system\nBe brief.\nuser\nHi\n" {
		t.Fatalf("prompt %q", got)
	}
}

func TestParseRequest_ConversationPrefixIsPromptPrefix(t *testing.T) {
	a, _ := ParseRequest(KindChat, []byte(`{"model":"m","messages":[{"role":"user","content":"one"}]}`))
	b, _ := ParseRequest(KindChat, []byte(`{"model":"m","messages":[{"role":"user","content":"one"},{"role":"assistant","content":"two"}]}`))
	if !strings.HasPrefix(string(b.Prompt), string(a.Prompt)) {
		t.Fatalf("%q is not a prefix of %q", a.Prompt, b.Prompt)
	}
}

func TestParseRequest_OtherKinds(t *testing.T) {
	cases := []struct {
		kind   Kind
		body   string
		prompt string
	}{
		{KindCompletion, `{"model":"m","prompt":"Once upon"}`, "Once upon"},
		{KindCompletion, `{"model":"m","prompt":[1,2]}`, "1 2 "},
		{KindEmbeddings, `{"model":"e","input":"embed me"}`, "embed me"},
		{KindResponses, `{"model":"m","instructions":"sys ","input":"question"}`, "sys question"},
	}
	for _, tc := range cases {
		p, err := ParseRequest(tc.kind, []byte(tc.body))
		if err != nil || string(p.Prompt) != tc.prompt {
			t.Errorf("%s: prompt %q, err %v; want %q", tc.body, p.Prompt, err, tc.prompt)
		}
	}
}

func TestParseRequest_BadInput(t *testing.T) {
	cases := map[string]string{
		`{"model":`:                     "",
		`[]`:                            "",
		`{"model":5}`:                   "model",
		`{"model":"m","stream":"yes"}`:  "stream",
		`{"model":"m","max_tokens":-3}`: "max_tokens",
		`{"model":"m","messages":{}}`:   "messages",
	}
	for body, param := range cases {
		_, err := ParseRequest(KindChat, []byte(body))
		var e *Error
		if !errors.As(err, &e) || e.Status() != 400 || e.Param != param {
			t.Errorf("%s: %v (param %q), want a 400 naming %q", body, err, paramOf(e), param)
		}
	}
}

func paramOf(e *Error) string {
	if e == nil {
		return "<nil>"
	}
	return e.Param
}

func TestParseRequest_MissingModelIsNotAnError(t *testing.T) {
	p, err := ParseRequest(KindChat, []byte(`{"messages":[]}`))
	if err != nil || p.HasModel() || p.Model != "" {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestWithModel_PatchesOnlyTheModel(t *testing.T) {
	cases := []struct{ body, want string }{
		{`{"model":"a","x":1}`, `{"model":"new-model","x":1}`},
		{`{ "x" : {"model":"inner"}, "model" : "a" }`, `{ "x" : {"model":"inner"}, "model" : "new-model" }`},
		{`{"mod\u0065l":"a"}`, `{"mod\u0065l":"new-model"}`},
		{`{"x":"\"model\":\"a\"","model":"a"}`, `{"x":"\"model\":\"a\"","model":"new-model"}`},
		{`{"x":1}`, `{"model":"new-model","x":1}`},
		{`{}`, `{"model":"new-model"}`},
	}
	for _, tc := range cases {
		p, err := ParseRequest(KindChat, []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(p.WithModel([]byte(tc.body), "new-model")); got != tc.want {
			t.Errorf("%s → %s, want %s", tc.body, got, tc.want)
		}
	}
}

// FuzzParseRequest checks that parsing never panics, and that rewriting the
// model of any accepted body gives valid JSON with the new model and every
// other field unchanged.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"m","prompt":["a","b"],"max_tokens":3}`,
		`{"x":[1,{"model":"y"}],"model":"m"}`,
		`{"model":"\u00e9\"q","messages":[]}`,
		`{}`, `[]`, `{"model":null}`, `{"model":"a","model":"b"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseRequest(KindChat, body)
		if err != nil {
			return
		}
		out := p.WithModel(body, "rewritten")
		var before, after map[string]any
		if json.Unmarshal(body, &before) != nil {
			return
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("rewritten body is not JSON: %v\n%s", err, out)
		}
		if after["model"] != "rewritten" {
			t.Fatalf("model is %v after rewrite of %s", after["model"], body)
		}
		delete(before, "model")
		delete(after, "model")
		b1, _ := json.Marshal(before)
		b2, _ := json.Marshal(after)
		if string(b1) != string(b2) {
			t.Fatalf("other fields changed:\n%s\n%s", b1, b2)
		}
	})
}

func BenchmarkParseRequest_Chat4KB(b *testing.B) {
	body := []byte(`{"model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,"max_tokens":128,"messages":[` +
		`{"role":"system","content":"` + strings.Repeat("You are a helpful assistant. ", 70) + `"},` +
		`{"role":"user","content":"` + strings.Repeat("What is the capital of France? ", 64) + `"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := ParseRequest(KindChat, body)
		if err != nil {
			b.Fatal(err)
		}
		_ = p.WithModel(body, "llama-canary")
	}
}

func TestParseRequest_AnthropicMessagesPromptIsSystemThenMessages(t *testing.T) {
	body := []byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"model":"m","max_tokens":9,"stream":true,"system":"be brief"}`)
	p, err := ParseRequest(KindForPath("/v1/messages"), body)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindMessages || p.Model != "m" || p.MaxTokens != 9 || !p.Stream || !p.IncludeUsage || p.Messages != 1 {
		t.Fatalf("parsed %+v", p)
	}
	if got := string(p.Prompt); got != "system\nbe brief\nuser\nhi\n" {
		t.Fatalf("prompt %q", got)
	}
	if _, err := ParseRequest(KindMessages, []byte(`{"model":"m","system":5}`)); err == nil {
		t.Fatal("a numeric system prompt must be refused")
	}
}
