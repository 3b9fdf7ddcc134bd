package openai

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestMessageContent_AcceptsStringPartsAndNull(t *testing.T) {
	cases := map[string]string{
		`"plain"`: "plain",
		`[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]`: "a\nb",
		`null`: "",
	}
	for in, want := range cases {
		var c MessageContent
		if err := json.Unmarshal([]byte(in), &c); err != nil || c.Text != want {
			t.Errorf("%s → %q, %v; want %q", in, c.Text, err, want)
		}
	}
	var c MessageContent
	if err := json.Unmarshal([]byte(`42`), &c); err == nil {
		t.Error("a number was accepted as content")
	}
}

func TestPrompt_AcceptsEveryShape(t *testing.T) {
	cases := []struct {
		in     string
		text   string
		tokens []uint32
		bad    bool
	}{
		{in: `"hi"`, text: "hi"},
		{in: `["first","second"]`, text: "first"},
		{in: `[1,2,3]`, tokens: []uint32{1, 2, 3}},
		{in: `[[4,5],[6]]`, tokens: []uint32{4, 5}},
		{in: `[]`, bad: true},
		{in: `{}`, bad: true},
		{in: `[-1]`, bad: true},
	}
	for _, tc := range cases {
		var p Prompt
		err := json.Unmarshal([]byte(tc.in), &p)
		if tc.bad {
			if err == nil {
				t.Errorf("%s accepted", tc.in)
			}
			continue
		}
		if err != nil || p.Text != tc.text || !slices.Equal(p.Tokens, tc.tokens) {
			t.Errorf("%s → %+v, %v", tc.in, p, err)
		}
	}
}

func TestOutputLimit_PrefersMaxCompletionTokens(t *testing.T) {
	var r ChatCompletionRequest
	if err := json.Unmarshal([]byte(`{"max_tokens":10,"max_completion_tokens":20}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.OutputLimit() != 20 {
		t.Errorf("limit %d, want 20", r.OutputLimit())
	}
}

func TestSSEReader_ParsesEventsAsClientsDo(t *testing.T) {
	stream := ": comment\n\ndata: {\"a\":1}\n\nevent: x\ndata: line1\ndata: line2\r\n\r\ndata:nospace\n\ndata: [DONE]\n\ndata: tail-without-blank-line"
	r := NewSSEReader(strings.NewReader(stream))
	var got []string
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d))
	}
	want := []string{`{"a":1}`, "line1\nline2", "nospace", "[DONE]", "tail-without-blank-line"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSSEReader_LongEvent(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	r := NewSSEReader(strings.NewReader("data: " + long + "\n\n"))
	d, err := r.Next()
	if err != nil || string(d) != long {
		t.Fatalf("long event: len %d, %v", len(d), err)
	}
}

func TestSSEWriter_FramesAndFlushes(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewSSEWriter(rec)
	if err := w.Event([]byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Done(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Body.String(); got != "data: {\"x\":1}\n\ndata: [DONE]\n\n" {
		t.Fatalf("stream %q", got)
	}
	if !rec.Flushed || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatal("not flushed or wrong content type")
	}
}

func TestWriteError_OpenAIShape(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, ModelNotFound("x"))
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d", rec.Code)
	}
	// OpenAI's own answer for the same condition, field for field.
	want := `{"error":{"message":"The model ` + "`x`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":"model","code":"model_not_found"}}`
	if got := rec.Body.String(); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	if got := string(NewError(400, ErrTypeInvalidRequest, "bad").JSON()); got != `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}` {
		t.Errorf("absent param and code must be null: %s", got)
	}
	if NewError(200, "", "").Status() != 500 {
		t.Error("a non-error status must render as 500")
	}
}

func TestError_AnthropicShapeAndParse(t *testing.T) {
	e := ModelNotFound("x")
	if got := string(e.Body(KindMessages)); got != `{"type":"error","error":{"type":"not_found_error","message":"The model `+"`x`"+` does not exist or you do not have access to it."}}` {
		t.Fatalf("anthropic body %s", got)
	}
	for _, body := range []string{string(e.JSON()), string(e.AnthropicJSON()), `{"error":{"message":"m","type":"NotFoundError","code":404}}`} {
		got, ok := ParseErrorBody([]byte(body))
		if !ok || got.Message == "" {
			t.Errorf("ParseErrorBody(%s) = %+v, %v", body, got, ok)
		}
	}
	if got, _ := ParseErrorBody([]byte(`{"error":{"message":"m","type":"NotFoundError","code":404}}`)); got.HTTPStatus != 404 {
		t.Errorf("vLLM's numeric code is the status: %+v", got)
	}
	if _, ok := ParseErrorBody([]byte("404 page not found")); ok {
		t.Error("plain text is not an error body")
	}
}
