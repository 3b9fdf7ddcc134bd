package openai

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestValidator_AcceptsWellFormedRequests(t *testing.T) {
	v := NewValidator()
	for _, tt := range []struct {
		kind Kind
		body string
	}{
		{KindChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{KindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:x","detail":"low"}}]},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],` +
			`"temperature":0.7,"top_p":1,"n":1,"stop":["\n"],"seed":5,"logit_bias":{"50256":-100},"max_completion_tokens":9,"stream":true,"stream_options":{"include_usage":true},` +
			`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto","response_format":{"type":"json_object"},"metadata":{"k":"v"}}`},
		{KindChat, `{"model":"m","messages":[],"guided_json":{"type":"object"},"top_k":5,"temperature":null}`}, // extensions and nulls
		{KindCompletion, `{"model":"m","prompt":"Once","max_tokens":5,"echo":false,"logprobs":2,"suffix":null,"stop":"x"}`},
		{KindCompletion, `{"model":"m","prompt":[[1,2],[3]]}`},
		{KindCompletion, `{"model":"m","prompt":["a","b"],"best_of":2}`},
		{KindEmbeddings, `{"model":"m","input":"x","temperature":"hot"}`}, // not checked
	} {
		if _, err := ParseRequest(tt.kind, []byte(tt.body)); err != nil {
			t.Fatalf("ParseRequest(%s): %v", tt.body, err)
		}
		if err := v.Validate(tt.kind, []byte(tt.body)); err != nil {
			t.Errorf("Validate(%s) = %v", tt.body, err)
		}
	}
}

func TestValidator_NamesTheField(t *testing.T) {
	v := NewValidator()
	for _, tt := range []struct {
		kind  Kind
		body  string
		param string
		msg   string
	}{
		{KindChat, `{"model":"m","messages":"hi"}`, "messages", "messages must be an array, not a string"},
		{KindChat, `{"model":"m","messages":[{"role":"user","content":"a"},{"role":1}]}`, "messages[1].role", "messages[1].role must be a string, not an integer"},
		{KindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":7}]}]}`, "messages[0].content[0].text", "must be a string or null, not an integer"},
		{KindChat, `{"model":"m","messages":[],"temperature":"hot"}`, "temperature", "temperature must be a number or null, not a string"},
		{KindChat, `{"model":"m","messages":[],"n":1.5}`, "n", "n must be an integer or null, not a number with a fraction or exponent"},
		{KindChat, `{"model":"m","messages":[],"stop":[1]}`, "stop[0]", "must be a string, not an integer"},
		{KindChat, `{"model":"m","messages":[],"logit_bias":{"1":"x"}}`, `logit_bias.1`, "must be a number, not a string"},
		{KindChat, `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":3}}]}`, "tools[0].function.name", "must be a string"},
		{KindChat, `{"model":"m","messages":[],"user":{}}`, "user", "user must be a string or null, not an object"},
		{KindCompletion, `{"model":"m","prompt":[{"x":1}]}`, "prompt[0]", "must be a string, an integer or an array, not an object"},
		{KindCompletion, `{"model":"m","prompt":[[1,"a"]]}`, "prompt[0][1]", "must be an integer, not a string"},
		{KindCompletion, `{"model":"m","prompt":"x","echo":"yes"}`, "echo", "must be a boolean or null, not a string"},
	} {
		err := v.Validate(tt.kind, []byte(tt.body))
		if err == nil {
			t.Errorf("Validate(%s) accepted it", tt.body)
			continue
		}
		if err.Param != tt.param || !strings.Contains(err.Message, tt.msg) || err.Status() != 400 {
			t.Errorf("Validate(%s) = param %q, %q (%d); want param %q, %q", tt.body, err.Param, err.Message, err.Status(), tt.param, tt.msg)
		}
	}
}

// referenceValidate is the same check done the slow, obvious way: decode
// the whole body into a tree with encoding/json and walk it beside the
// shape. The fuzz test holds the one-pass validator to it.
func referenceValidate(s *shape, v any) bool {
	var k jsonKinds
	switch x := v.(type) {
	case nil:
		k = kNull
	case string:
		k = kString
	case bool:
		k = kBool
	case json.Number:
		k = kInteger
		if strings.ContainsAny(x.String(), ".eE") {
			k = kNumber
		}
	case map[string]any:
		k = kObject
	case []any:
		k = kArray
	}
	if s.kinds&k == 0 {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(x)) {
			sub := s.values
			if f, ok := s.fields[name]; ok {
				sub = f
			}
			if sub != nil && !referenceValidate(sub, x[name]) {
				return false
			}
		}
	case []any:
		if s.elem == nil {
			return true
		}
		for _, e := range x {
			if !referenceValidate(s.elem, e) {
				return false
			}
		}
	}
	return true
}

// FuzzValidator_MatchesTreeWalk checks the one-pass validator against a
// decode-everything reference on arbitrary bodies that ParseRequest
// accepts: same verdict, never a panic, and an error always names a field.
// Seeds are in testdata/fuzz/FuzzValidator_MatchesTreeWalk.
func FuzzValidator_MatchesTreeWalk(f *testing.F) {
	f.Add(byte(KindChat), []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"n":1}`))
	f.Add(byte(KindCompletion), []byte(`{"model":"m","prompt":[[1,2],[3]],"logit_bias":{"1":2.5}}`))
	v := NewValidator()
	f.Fuzz(func(t *testing.T, k byte, body []byte) {
		kind := Kind(k%2) + 1 // chat or completion
		if _, err := ParseRequest(kind, body); err != nil {
			return // the guard validates only what parsed
		}
		got := v.Validate(kind, body)
		// Duplicate keys: the reference (a map) sees only the last value
		// while the one-pass validator checks every occurrence, which is
		// stricter and right (servers differ in which one they read).
		if hasDuplicateKeys(body) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var tree any
		if err := dec.Decode(&tree); err != nil {
			t.Fatalf("ParseRequest accepted what encoding/json rejects: %v", err)
		}
		s := v.shapes.chat
		if kind == KindCompletion {
			s = v.shapes.completion
		}
		want := referenceValidate(s, tree)
		if (got == nil) != want {
			t.Fatalf("kind %d %q: Validate = %v, reference accepts = %v", kind, body, got, want)
		}
		if got != nil && got.Param == "" && !strings.HasPrefix(got.Message, " must") {
			t.Fatalf("error without a field: %v", got)
		}
	})
}

// hasDuplicateKeys reports whether any object in the document repeats a
// key (decoded with encoding/json's token stream).
func hasDuplicateKeys(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		seen   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch x := tok.(type) {
		case json.Delim:
			switch x {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{seen: map[string]bool{}, object: x == '{', key: x == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.seen[x] {
					return true
				}
				top.seen[x] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

func TestParseRequest_CountsMessages(t *testing.T) {
	p, err := ParseRequest(KindChat, []byte(`{"model":"m","messages":[{"role":"user","content":"a"},null,{"role":"assistant","content":"b"}]}`))
	if err != nil || p.Messages != 3 {
		t.Fatalf("Messages = %d, %v", p.Messages, err)
	}
}

func TestClampMaxTokens(t *testing.T) {
	for _, tt := range []struct {
		body, want string
		max        int
	}{
		{`{"model":"m","max_tokens":5000}`, `{"model":"m","max_tokens":100}`, 100},
		{`{"max_tokens":5000,"model":"m","max_completion_tokens":7000}`, `{"max_tokens":100,"model":"m","max_completion_tokens":100}`, 100},
		{`{"model":"m","max_tokens":50}`, `{"model":"m","max_tokens":50}`, 50},
		{`{"model":"m"}`, `{"max_tokens":100,"model":"m"}`, 100},
		{` { } `, ` {"max_tokens":100 } `, 100},
		{`{"max_tokens":null,"model":"m"}`, `{"max_tokens":null,"model":"m"}`, 100},
	} {
		p, err := ParseRequest(KindCompletion, []byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		got := p.ClampMaxTokens([]byte(tt.body), tt.max)
		if string(got) != tt.want {
			t.Errorf("ClampMaxTokens(%s, %d) = %s, want %s", tt.body, tt.max, got, tt.want)
		}
		if !json.Valid(got) {
			t.Errorf("invalid JSON: %s", got)
		}
		// The model offsets still point at the model in the new body.
		if p.HasModel() {
			var m map[string]any
			_ = json.Unmarshal(p.WithModel(got, "x"), &m)
			if m["model"] != "x" {
				t.Errorf("WithModel after clamp of %s broke the body: %v", tt.body, m)
			}
		}
		if p.MaxTokens != tt.max {
			t.Errorf("MaxTokens = %d", p.MaxTokens)
		}
	}
}

// BenchmarkValidate_Chat is the strict validator's cost on a typical
// multi-turn chat request.
func BenchmarkValidate_Chat(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"llama","stream":true,"max_tokens":256,"temperature":0.7,"messages":[`)
	for i := range 8 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"role":"user","content":"` + strings.Repeat("word ", 60) + strconv.Itoa(i) + `"}`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	v := NewValidator()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(KindChat, body); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzClampMaxTokens: the clamped body is valid JSON, differs from the
// original only in the output caps (each at most the limit; max_tokens
// added when there was none), and the model offsets still work.
func FuzzClampMaxTokens(f *testing.F) {
	f.Add([]byte(`{"model":"m","prompt":"x","max_tokens":500}`), uint16(100))
	f.Add([]byte(`{"max_completion_tokens":7000,"model":"m","max_tokens":null}`), uint16(64))
	f.Add([]byte(` { } `), uint16(1))
	f.Fuzz(func(t *testing.T, body []byte, limit uint16) {
		p, err := ParseRequest(KindCompletion, body)
		if err != nil || hasDuplicateKeys(body) {
			return
		}
		out := p.ClampMaxTokens(append([]byte(nil), body...), int(limit))
		var before, after map[string]any
		if json.Unmarshal(body, &before) != nil || json.Unmarshal(out, &after) != nil {
			t.Fatalf("%q clamped to invalid JSON %q", body, out)
		}
		caps := map[string]bool{"max_completion_tokens": true, "max_tokens": true, "max_output_tokens": true}
		found := false
		for k, v := range before {
			if !caps[k] {
				if !reflectDeepEqual(v, after[k]) {
					t.Fatalf("%q: field %s changed: %v -> %v", body, k, v, after[k])
				}
				continue
			}
			found = true
			n, isNum := v.(float64)
			switch {
			case !isNum:
				if !reflectDeepEqual(v, after[k]) {
					t.Fatalf("%q: non-numeric %s changed", body, k)
				}
			case n > float64(limit):
				if after[k] != float64(limit) {
					t.Fatalf("%q: %s = %v, want %d", body, k, after[k], limit)
				}
			case after[k] != n:
				t.Fatalf("%q: %s within the limit changed to %v", body, k, after[k])
			}
		}
		if !found && after["max_tokens"] != float64(limit) {
			t.Fatalf("%q: no cap added: %q", body, out)
		}
		if p.HasModel() {
			var m map[string]any
			if json.Unmarshal(p.WithModel(out, "zz"), &m) != nil || m["model"] != "zz" {
				t.Fatalf("%q: WithModel after clamp broke the body", body)
			}
		}
	})
}

func reflectDeepEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
