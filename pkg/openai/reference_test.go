package openai

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

// referenceParse is the straightforward encoding/json reading of a request
// that ParseRequest replaced for speed; the differential fuzz test holds
// the two to the same answers.
func referenceParse(kind Kind, body []byte) (*Parsed, bool) {
	var fields struct {
		Model         *string         `json:"model"`
		Stream        *bool           `json:"stream"`
		StreamOptions *StreamOptions  `json:"stream_options"`
		MaxTokens     *int            `json:"max_tokens"`
		MaxCompletion *int            `json:"max_completion_tokens"`
		MaxOutput     *int            `json:"max_output_tokens"`
		Messages      json.RawMessage `json:"messages"`
		Prompt        json.RawMessage `json:"prompt"`
		Input         json.RawMessage `json:"input"`
		Instructions  json.RawMessage `json:"instructions"`
	}
	if json.Unmarshal(body, &fields) != nil || bytes.TrimSpace(body)[0] != '{' { // a request is an object, not null
		return nil, false
	}
	p := &Parsed{Kind: kind}
	if fields.Model != nil {
		p.Model = *fields.Model
	}
	p.Stream = fields.Stream != nil && *fields.Stream
	p.IncludeUsage = fields.StreamOptions != nil && fields.StreamOptions.IncludeUsage
	for _, v := range []*int{fields.MaxCompletion, fields.MaxTokens, fields.MaxOutput} {
		if v != nil {
			if *v < 0 {
				return nil, false
			}
			p.MaxTokens = *v
			break
		}
	}
	null := func(raw json.RawMessage) bool { return len(raw) == 0 || bytes.Equal(raw, []byte("null")) }
	if kind == KindChat && !null(fields.Messages) {
		var msgs []ChatMessage
		if json.Unmarshal(fields.Messages, &msgs) != nil {
			return nil, false
		}
		for _, m := range msgs {
			p.Prompt = append(p.Prompt, m.Role+"\n"+m.Content.Text+"\n"...)
		}
	}
	if kind == KindCompletion && !null(fields.Prompt) {
		var pr Prompt
		if json.Unmarshal(fields.Prompt, &pr) != nil {
			return nil, false
		}
		if pr.Tokens == nil {
			p.Prompt = append(p.Prompt, pr.Text...)
		}
		for _, t := range pr.Tokens {
			p.Prompt = append(strconv.AppendUint(p.Prompt, uint64(t), 10), ' ')
		}
	}
	if kind == KindEmbeddings || kind == KindResponses {
		if !null(fields.Instructions) {
			var ins string
			if json.Unmarshal(fields.Instructions, &ins) != nil {
				return nil, false
			}
			p.Prompt = append(p.Prompt, ins...)
		}
		if len(fields.Input) > 0 {
			var in MessageContent
			if json.Unmarshal(fields.Input, &in) == nil {
				p.Prompt = append(p.Prompt, in.Text...)
			} else {
				p.Prompt = append(p.Prompt, fields.Input...)
			}
		}
	}
	return p, true
}

// FuzzParseRequest_MatchesEncodingJSON: on every body, ParseRequest
// accepts exactly what the encoding/json reading accepts and extracts the
// same fields. Bodies with upper-case letters are skipped, because
// encoding/json matches field names case-insensitively and ParseRequest,
// like the OpenAI API, does not.
func FuzzParseRequest_MatchesEncodingJSON(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi\nthere \u00e9 \ud83d\ude00"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"input_text","text":"b"},null]},null]}`,
		`{"model":"m","prompt":["a","b"],"max_completion_tokens":3,"max_tokens":9}`,
		`{"model":"m","prompt":[1,2,3]}`, `{"model":"m","prompt":[[4,5],[6]]}`, `{"model":"m","prompt":[]}`,
		`{"model":"e","input":["x","y"],"instructions":"sys"}`, `{"input":[{"type":"input_text","text":"q"}]}`,
		`{"model":null,"stream":null,"max_tokens":null}`, `{"max_tokens":1.5}`, `{"max_tokens":-1}`,
		`{"messages":{}}`, `{"messages":[1]}`, `{"messages":[{"role":5}]}`, `{"messages":[{"content":{}}]}`,
		`{"messages":[{"name":1}]}`, `{"stream_options":{"include_usage":"x"}}`, `{"model":"a","model":"b"}`,
		`{"x":"\ud800"}`, `[]`, `"s"`, `{`, `{"model":"m"} `,
	} {
		f.Add(byte(KindChat), []byte(seed))
		f.Add(byte(KindCompletion), []byte(seed))
		f.Add(byte(KindEmbeddings), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, k byte, body []byte) {
		kind := Kind(k%4) + 1
		if bytes.ContainsFunc(body, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
			return
		}
		got, err := ParseRequest(kind, body)
		want, ok := referenceParse(kind, body)
		if (err == nil) != ok {
			t.Fatalf("kind %d %q: ParseRequest err=%v, encoding/json ok=%v", kind, body, err, ok)
		}
		if !ok {
			return
		}
		if got.Model != want.Model || got.Stream != want.Stream || got.IncludeUsage != want.IncludeUsage || got.MaxTokens != want.MaxTokens {
			t.Fatalf("kind %d %q: got %+v, want %+v", kind, body, got, want)
		}
		if !bytes.Equal(got.Prompt, want.Prompt) {
			t.Fatalf("kind %d %q: prompt %q, want %q", kind, body, got.Prompt, want.Prompt)
		}
	})
}
