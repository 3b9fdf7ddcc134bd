package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// chunking is one way a proxy or ext_proc may cut a body into Writes.
type chunking struct {
	name  string
	split func(body []byte) [][]byte
}

func randomChunks(seed uint64, maxSize int) func([]byte) [][]byte {
	return func(body []byte) [][]byte {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		var out [][]byte
		for len(body) > 0 {
			n := min(1+r.IntN(maxSize), len(body))
			out = append(out, body[:n])
			body = body[n:]
		}
		return out
	}
}

func chunkings(byteByByte bool) []chunking {
	cs := []chunking{
		{"whole", func(b []byte) [][]byte { return [][]byte{b} }},
		{"random-1..7/seed1", randomChunks(1, 7)},
		{"random-1..64/seed2", randomChunks(2, 64)},
		{"random-1..64/seed3", randomChunks(3, 64)},
		{"random-1..4096/seed4", randomChunks(4, 4096)},
		{"random-1..64KiB/seed5", randomChunks(5, 64<<10)},
	}
	if byteByByte {
		cs = append(cs, chunking{"byte-by-byte", func(b []byte) [][]byte {
			out := make([][]byte, len(b))
			for i := range b {
				out[i] = b[i : i+1]
			}
			return out
		}})
	}
	return cs
}

// observe feeds body to a fresh observer in the given chunks. Each chunk is
// copied to a scratch buffer that is scribbled over after the Write, so an
// observer that kept p would give wrong answers.
func observe(contentType string, chunks [][]byte) *UsageObserver {
	o := NewUsageObserver(contentType)
	var scratch []byte
	for _, c := range chunks {
		scratch = append(scratch[:0], c...)
		if n, err := o.Write(scratch); n != len(c) || err != nil {
			panic(fmt.Sprintf("Write = %d, %v; want %d, nil", n, err, len(c)))
		}
		for i := range scratch {
			scratch[i] = '#'
		}
	}
	return o
}

func usageOf(prompt, completion, total, cached int) *Usage {
	u := &Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: total}
	if cached >= 0 {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: cached}
	}
	return u
}

func checkUsage(t *testing.T, o *UsageObserver, want *Usage, wantDone bool) {
	t.Helper()
	got, ok := o.Usage()
	switch {
	case want == nil && ok:
		t.Errorf("Usage() = %+v, true; want none", got)
	case want != nil && !ok:
		t.Errorf("Usage() = none; want %+v", *want)
	case want != nil && !reflect.DeepEqual(got, *want):
		t.Errorf("Usage() = %s; want %s", fmtUsage(got), fmtUsage(*want))
	}
	if done := o.Done(); done != wantDone {
		t.Errorf("Done() = %v; want %v", done, wantDone)
	}
}

func fmtUsage(u Usage) string {
	s := fmt.Sprintf("{prompt %d, completion %d, total %d", u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	if u.PromptTokensDetails != nil {
		s += fmt.Sprintf(", cached %d", u.PromptTokensDetails.CachedTokens)
	}
	return s + "}"
}

const vllmChunkHead = `{"id":"chatcmpl-8f3a","object":"chat.completion.chunk","created":1718000000,"model":"meta-llama/Llama-3.1-8B-Instruct",`

// vllmStream is a vLLM chat stream of n tokens as sent with
// stream_options.include_usage: token chunks without a usage key, a finish
// chunk, then (if usage is not empty) a chunk with no choices and the usage,
// then [DONE]. Lines end with eol.
func vllmStream(n int, usage, eol string) []byte {
	var b strings.Builder
	event := func(payload string) {
		b.WriteString("data: " + payload + eol + eol)
	}
	event(vllmChunkHead + `"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`)
	for i := range n {
		event(vllmChunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{"content":" tok%d"},"logprobs":null,"finish_reason":null}]}`, i))
	}
	event(vllmChunkHead + `"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]}`)
	if usage != "" {
		event(vllmChunkHead + `"choices":[],"usage":` + usage + `}`)
	}
	event(SSEDone)
	return []byte(b.String())
}

const vllmUsage = `{"prompt_tokens":17,"total_tokens":529,"completion_tokens":512,"prompt_tokens_details":{"cached_tokens":16}}`

func TestUsageObserver_SSE(t *testing.T) {
	openAIStyle := func() string { // "usage":null on every chunk, no space after "data:"
		var b strings.Builder
		for i := range 5 {
			fmt.Fprintf(&b, `data:{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"w%d"}}],"usage":null}`+"\n\n", i)
		}
		b.WriteString(`data:{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}` + "\n\n")
		b.WriteString("data:[DONE]\n\n")
		return b.String()
	}
	continuous := func() string { // vLLM continuous_usage_stats: every chunk has usage
		var b strings.Builder
		for i := 1; i <= 4; i++ {
			fmt.Fprintf(&b, `data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", i, 3+i)
		}
		b.WriteString("data: [DONE]\n\n")
		return b.String()
	}
	cases := []struct {
		name     string
		body     string
		want     *Usage
		wantDone bool
	}{
		{"vllm include_usage", string(vllmStream(40, vllmUsage, "\n")), usageOf(17, 512, 529, 16), true},
		{"no usage", string(vllmStream(40, "", "\n")), nil, true},
		{"CRLF line endings", string(vllmStream(40, vllmUsage, "\r\n")), usageOf(17, 512, 529, 16), true},
		{"CR line endings", string(vllmStream(40, vllmUsage, "\r")), usageOf(17, 512, 529, 16), true},
		{"openai usage null on every chunk", openAIStyle(), usageOf(9, 5, 14, -1), true},
		{"continuous usage stats: last wins", continuous(), usageOf(3, 4, 7, -1), true},
		{"total omitted is computed", "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6}}\n\ndata: [DONE]\n\n", usageOf(4, 6, 10, -1), true},
		{"spaces around colon", "data: {\"usage\" : {\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n", usageOf(1, 1, 2, -1), false},
		{"responses api", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"," +
			"\"usage\":{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":5,\"total_tokens\":15}}}\n\n",
			usageOf(10, 5, 15, 4), false},
		{"usage text inside content is not usage", `data: {"choices":[{"delta":{"content":"\"usage\":{\"prompt_tokens\":999}"}}]}` + "\n\ndata: [DONE]\n\n", nil, true},
		{"nested usage key is not usage", `data: {"choices":[{"delta":{},"usage":{"prompt_tokens":999}}]}` + "\n\n", nil, false},
		{"malformed usage keeps the earlier one", "data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: {\"usage\":{\"prompt_tokens\":\"x\"}}\n\n", usageOf(2, 3, 5, -1), false},
		{"negative counts are ignored", "data: {\"usage\":{\"prompt_tokens\":-2,\"completion_tokens\":3}}\n\n", nil, false},
		{"comments ids and other fields are ignored", ": ping\nid: 7\nretry: 10\nevent: x\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n: ping\n\n", usageOf(1, 2, 3, -1), false},
		{"cut before the final newline", "data: {\"choices\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":1,\"total_tokens\":9}}", usageOf(8, 1, 9, -1), false},
		{"DONE without final newline", "data: {\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":1,\"total_tokens\":9}}\n\ndata: [DONE]", usageOf(8, 1, 9, -1), true},
		{"cut inside the usage line", "data: {\"usage\":{\"prompt_tokens\":8,\"compl", nil, false},
		{"data field is case-sensitive", "Data: {\"usage\":{\"prompt_tokens\":8}}\n\nDATA: [DONE]\n\n", nil, false},
		{"empty", "", nil, false},
	}
	for _, tc := range cases {
		for _, ch := range chunkings(true) {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				o := observe("text/event-stream", ch.split([]byte(tc.body)))
				checkUsage(t, o, tc.want, tc.wantDone)
			})
		}
	}
}

// A line longer than the carry bound is skipped, however it is chunked: the
// observer never buffers more than the bound, and the result never depends
// on chunk boundaries. Lines before and after it are still read.
func TestUsageObserver_SSELongLines(t *testing.T) {
	usageLine := func(size int) string {
		line := `data: {"choices":[],"pad":"","usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}`
		pad := size - len(line)
		return strings.Replace(line, `"pad":""`, `"pad":"`+strings.Repeat("p", pad)+`"`, 1)
	}
	first := "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n"
	cases := []struct {
		name string
		body string
		want *Usage
	}{
		{"line at the bound is read", first + usageLine(maxUsageBytes) + "\n\ndata: [DONE]\n\n", usageOf(100, 20, 120, -1)},
		{"line one byte over is skipped", first + usageLine(maxUsageBytes+1) + "\n\ndata: [DONE]\n\n", usageOf(1, 1, 2, -1)},
		{"CRLF line at the bound is read", first + usageLine(maxUsageBytes) + "\r\n\r\ndata: [DONE]\r\n\r\n", usageOf(100, 20, 120, -1)},
		{"1 MiB line is skipped", first + usageLine(1<<20) + "\n\ndata: [DONE]\n\n", usageOf(1, 1, 2, -1)},
		{"unterminated long line is skipped", usageLine(maxUsageBytes + 10), nil},
	}
	for _, tc := range cases {
		for _, ch := range chunkings(false) {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				o := observe("text/event-stream", ch.split([]byte(tc.body)))
				checkUsage(t, o, tc.want, strings.Contains(tc.body, SSEDone))
				if cap(o.carry) > maxUsageBytes {
					t.Errorf("carry grew to %d bytes", cap(o.carry))
				}
			})
		}
	}
}

func chatCompletionJSON(t testing.TB, content string, usage *Usage) []byte {
	b, err := json.Marshal(ChatCompletion{
		ID: "chatcmpl-1", Object: ObjectChatCompletion, Created: 1718000000, Model: "meta-llama/Llama-3.1-8B-Instruct",
		Choices: []ChatChoice{{Message: ChatMessage{Role: "assistant", Content: MessageContent{Text: content}}, FinishReason: FinishStop}},
		Usage:   usage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUsageObserver_JSON(t *testing.T) {
	u := usageOf(17, 5, 22, 16)
	tricky := `say "usage":{"prompt_tokens":999} and \"usage\":{ and a \ and \\" and }}]]{{ "usage":{"total_tokens":1}`
	cases := []struct {
		name     string
		body     string
		want     *Usage
		wantDone bool
	}{
		{"chat completion", string(chatCompletionJSON(t, "Paris is the capital of France.", u)), u, true},
		{"usage text inside content", string(chatCompletionJSON(t, tricky, u)), u, true},
		{"usage text inside content, no usage", string(chatCompletionJSON(t, tricky, nil)), nil, true},
		{"content ending in backslashes", string(chatCompletionJSON(t, `ends with \\\`, u)), u, true},
		{"pretty printed", "{\n  \"id\": \"x\",\n  \"usage\" : {\n    \"prompt_tokens\": 3,\n    \"completion_tokens\": 4\n  }\n}\n", usageOf(3, 4, 7, -1), true},
		{"usage first", `{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7},"id":"x","choices":[{"message":{"content":"hi"}}]}`, usageOf(3, 4, 7, -1), true},
		{"nested usage key is not usage", `{"choices":[{"usage":{"prompt_tokens":999}}],"meta":{"usage":{"prompt_tokens":998}}}`, nil, true},
		{"usage null", `{"id":"x","usage":null}`, nil, true},
		{"usage not an object", `{"id":"x","usage":[1,2],"more":"usage"}`, nil, true},
		{"escaped key", `{"usag\u0065":{"prompt_tokens":3,"completion_tokens":4}}`, usageOf(3, 4, 7, -1), true},
		{"key that ends in usage", `{"x\"usage":{"prompt_tokens":3},"usage_":{"prompt_tokens":4}}`, nil, true},
		{"usage as a value is not a key", `{"object":"usage","x":{"prompt_tokens":3}}`, nil, true},
		{"duplicate key: last object wins", `{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2},"usage":null}`, usageOf(2, 0, 2, -1), true},
		{"responses api", `{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],` +
			`"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":15}}`,
			usageOf(10, 5, 15, 4), true},
		{"embeddings", `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"e5","usage":{"prompt_tokens":8,"total_tokens":8}}`, usageOf(8, 0, 8, -1), true},
		{"error body", `{"error":{"message":"model not found","type":"NotFoundError","code":404}}`, nil, true},
		{"truncated after usage", `{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4},"choices":[`, usageOf(3, 4, 7, -1), false},
		{"truncated inside usage", `{"id":"x","usage":{"prompt_tokens":3,"completion_tok`, nil, false},
		{"not an object", `[{"usage":{"prompt_tokens":3}}]`, nil, false},
		{"after the document", `{"id":"x"} {"usage":{"prompt_tokens":3}}`, nil, true},
		{"empty", "", nil, false},
	}
	for _, tc := range cases {
		for _, ch := range chunkings(true) {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				o := observe("application/json", ch.split([]byte(tc.body)))
				checkUsage(t, o, tc.want, tc.wantDone)
			})
		}
	}
}

// A body of any size is observed in constant memory, with usage found at its
// end; a usage value over the bound is skipped rather than buffered.
func TestUsageObserver_JSONLargeBodies(t *testing.T) {
	u := usageOf(1000, 200000, 201000, 0)
	big := chatCompletionJSON(t, strings.Repeat(`lorem "ipsum" \ dolor {usage}: `, 3<<20/32), u)
	hugeUsage := []byte(`{"id":"x","usage":{"prompt_tokens":3,"pad":"` + strings.Repeat("p", maxUsageBytes) + `","completion_tokens":4}}`)
	for _, ch := range chunkings(false) {
		t.Run("3MiB/"+ch.name, func(t *testing.T) {
			o := observe("application/json", ch.split(big))
			checkUsage(t, o, u, true)
			if cap(o.js.capBuf) > 1024 {
				t.Errorf("usage buffer grew to %d bytes", cap(o.js.capBuf))
			}
		})
		t.Run("usage over the bound/"+ch.name, func(t *testing.T) {
			o := observe("application/json", ch.split(hugeUsage))
			checkUsage(t, o, nil, true)
			if cap(o.js.capBuf) > maxUsageBytes {
				t.Errorf("usage buffer grew to %d bytes", cap(o.js.capBuf))
			}
		})
	}
}

func TestUsageObserver_ContentType(t *testing.T) {
	sse := "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	doc := `{"usage":{"prompt_tokens":1,"completion_tokens":2}}`
	cases := []struct {
		contentType string
		body        string
		want        bool
	}{
		{"text/event-stream", sse, true},
		{"text/event-stream; charset=utf-8", sse, true},
		{" Text/Event-Stream ", sse, true},
		{"application/json", doc, true},
		{"application/json; charset=utf-8", doc, true},
		{"application/problem+json", doc, true},
		{"application/json", sse, false},
		{"text/event-stream", doc, false},
		{"text/plain", sse, false},
		{"text/plain", doc, false},
		{"", doc, false},
		{"application/octet-stream", doc, false},
	}
	for _, tc := range cases {
		o := NewUsageObserver(tc.contentType)
		_, _ = io.Copy(o, strings.NewReader(tc.body))
		if _, ok := o.Usage(); ok != tc.want {
			t.Errorf("%q with %.20q: ok = %v; want %v", tc.contentType, tc.body, ok, tc.want)
		}
	}
}

func TestUsageObserver_UsageReturnsACopy(t *testing.T) {
	o := NewUsageObserver("application/json")
	_, _ = o.Write([]byte(`{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}`))
	u, _ := o.Usage()
	u.PromptTokensDetails.CachedTokens = 99
	if again, _ := o.Usage(); again.PromptTokensDetails.CachedTokens != 4 {
		t.Fatalf("caller's change leaked into the observer: %+v", *again.PromptTokensDetails)
	}
}

func TestUsageObserver_AsTeeWriter(t *testing.T) {
	body := vllmStream(10, vllmUsage, "\n")
	o := NewUsageObserver("text/event-stream")
	var client bytes.Buffer
	if _, err := io.Copy(&client, io.TeeReader(bytes.NewReader(body), o)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(client.Bytes(), body) {
		t.Fatal("the client did not get the body unchanged")
	}
	checkUsage(t, o, usageOf(17, 512, 529, 16), true)
}

// Garbage never panics, and the result does not depend on chunking.
func TestUsageObserver_Garbage(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	seeds := [][]byte{
		vllmStream(3, vllmUsage, "\n"),
		vllmStream(3, vllmUsage, "\r\n"),
		chatCompletionJSON(t, `a "usage":{ \`, usageOf(1, 2, 3, 0)),
	}
	alphabet := []byte("{}[]\":,\\ \r\nusagedata:[DONE]0123456789-ntrue")
	for i := range 3000 {
		var body []byte
		switch i % 3 {
		case 0: // random bytes
			body = make([]byte, r.IntN(300))
			for j := range body {
				body[j] = byte(r.Uint32())
			}
		case 1: // random structural bytes
			body = make([]byte, r.IntN(300))
			for j := range body {
				body[j] = alphabet[r.IntN(len(alphabet))]
			}
		case 2: // a real body, mutated
			body = bytes.Clone(seeds[r.IntN(len(seeds))])
			for range 1 + r.IntN(8) {
				body[r.IntN(len(body))] = alphabet[r.IntN(len(alphabet))]
			}
		}
		for _, ct := range []string{"text/event-stream", "application/json"} {
			checkSplitInvariant(t, ct, body, uint64(i))
		}
	}
}

type observed struct {
	usage Usage
	ok    bool
	done  bool
}

func resultOf(o *UsageObserver) observed {
	u, ok := o.Usage()
	return observed{u, ok, o.Done()}
}

func checkSplitInvariant(t *testing.T, contentType string, body []byte, seed uint64) observed {
	t.Helper()
	whole := resultOf(observe(contentType, [][]byte{body}))
	for _, split := range []func([]byte) [][]byte{randomChunks(seed, 5), randomChunks(seed+1, 40)} {
		if got := resultOf(observe(contentType, split(body))); !reflect.DeepEqual(got, whole) {
			t.Fatalf("%s %q: split gives %+v, whole gives %+v", contentType, body, got, whole)
		}
	}
	return whole
}

// jsonUsageOracle finds the top-level usage of a valid JSON document with
// encoding/json: the last "usage" member that is an object and decodes.
func jsonUsageOracle(body []byte) (Usage, bool, bool) {
	if !json.Valid(body) {
		return Usage{}, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return Usage{}, false, true
	}
	var u Usage
	found := false
	for dec.More() {
		key, _ := dec.Token()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Usage{}, false, false
		}
		if key == "usage" && len(raw) > 0 && raw[0] == '{' && len(raw) <= maxUsageBytes {
			if du, ok := decodeUsage(raw); ok {
				u, found = du, true
			}
		}
	}
	return u, found, true
}

func FuzzUsageObserver(f *testing.F) {
	f.Add(true, vllmStream(2, vllmUsage, "\n"), uint64(1))
	f.Add(true, vllmStream(2, vllmUsage, "\r\n"), uint64(2))
	f.Add(true, []byte("data: {\"usage\":{\"prompt_tokens\":1}}\rdata: [DONE]\r"), uint64(3))
	f.Add(true, []byte("event: response.completed\ndata: {\"response\":{\"usage\":{\"input_tokens\":1}}}\n\n"), uint64(4))
	f.Add(false, chatCompletionJSON(f, `x "usage":{"prompt_tokens":9} \`, usageOf(1, 2, 3, 0)), uint64(5))
	f.Add(false, []byte(`{"usag\u0065":{"prompt_tokens":3},"a":["\\\"",{"usage":{}}]}`), uint64(6))
	f.Add(false, []byte(`{"usage":{"prompt_tokens":1},"usage":null}`), uint64(7))
	f.Fuzz(func(t *testing.T, sse bool, body []byte, seed uint64) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		got := checkSplitInvariant(t, ct, body, seed)
		if sse {
			return
		}
		want, wantOK, valid := jsonUsageOracle(body)
		if valid && (got.ok != wantOK || !reflect.DeepEqual(got.usage, want)) {
			t.Fatalf("%q: observer found %+v (%v); encoding/json finds %+v (%v)", body, got.usage, got.ok, want, wantOK)
		}
		if valid && !got.done && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
			t.Fatalf("%q: a complete document is not Done", body)
		}
	})
}

func BenchmarkUsageObserver_SSE(b *testing.B) {
	const tokens = 512
	body := vllmStream(tokens, vllmUsage, "\n")
	events := bytes.SplitAfter(body, []byte("\n\n"))
	events = events[:len(events)-1] // SplitAfter leaves an empty tail
	b.Run("stream", func(b *testing.B) {
		// One op is a whole 512-token response, fed one event per Write
		// as vLLM flushes them, including decoding the usage chunk.
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			o := NewUsageObserver("text/event-stream")
			for _, e := range events {
				_, _ = o.Write(e)
			}
			if _, ok := o.Usage(); !ok {
				b.Fatal("no usage")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	for _, tc := range []struct {
		name  string
		event []byte
	}{
		{"token-chunk", events[len(events)/2]},
		{"token-chunk-usage-null", []byte(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" tok"}}],"usage":null}` + "\n\n")},
		{"token-chunk-split", events[len(events)/2]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// One op is one token chunk: the per-token cost on the hot path.
			o := NewUsageObserver("text/event-stream")
			half := len(tc.event)
			if tc.name == "token-chunk-split" {
				half = len(tc.event) / 2
			}
			b.SetBytes(int64(len(tc.event)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = o.Write(tc.event[:half])
				_, _ = o.Write(tc.event[half:])
			}
		})
	}
}

func BenchmarkUsageObserver_JSON(b *testing.B) {
	for _, tc := range []struct {
		name    string
		content string
		chunk   int
	}{
		{"512-tokens-whole", strings.Repeat("Paris is nice. ", 170), 1 << 30},
		{"1MiB-32KiB-chunks", strings.Repeat(`lorem "ipsum" dolor sit amet `, 1<<20/32), 32 << 10},
	} {
		body := chatCompletionJSON(b, tc.content, usageOf(17, 512, 529, 16))
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				o := NewUsageObserver("application/json")
				for rest := body; len(rest) > 0; {
					n := min(tc.chunk, len(rest))
					_, _ = o.Write(rest[:n])
					rest = rest[n:]
				}
				if _, ok := o.Usage(); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}

// The first token of a stream is the first event with output: the chat
// role event and usage-only events before it do not count, whatever the
// API's event shape.
func TestUsageObserver_SawToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []string
		want   []bool // after each event
	}{
		{"chat", []string{
			`{"choices":[{"delta":{"role":"assistant","content":""}}]}`,
			`{"choices":[{"delta":{"content":"Hi"}}]}`,
		}, []bool{false, true}},
		{"completions", []string{`{"choices":[{"text":""}]}`, `{"choices":[{"text":" the"}]}`}, []bool{false, true}},
		{"reasoning", []string{`{"choices":[{"delta":{"reasoning_content":"hmm"}}]}`}, []bool{true}},
		{"tool call", []string{`{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}`}, []bool{true}},
		{"responses", []string{`{"type":"response.created"}`, `{"type":"response.output_text.delta","delta":"Hi"}`}, []bool{false, true}},
		{"anthropic", []string{`{"type":"message_start"}`, `{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}`}, []bool{false, true}},
		{"usage only", []string{`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}`}, []bool{false}},
		{"escaped quote first", []string{`{"choices":[{"delta":{"content":"\"quoted\""}}]}`}, []bool{true}},
	} {
		o := NewUsageObserver("text/event-stream")
		for i, ev := range tc.events {
			_, _ = o.Write([]byte("data: " + ev + "\n\n"))
			if got := o.SawToken(); got != tc.want[i] {
				t.Errorf("%s: after event %d SawToken = %v, want %v", tc.name, i, got, tc.want[i])
			}
		}
	}
}

func TestUsageObserver_AnthropicStreamKeepsInputFromMessageStart(t *testing.T) {
	o := NewUsageObserver("text/event-stream")
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	_, _ = o.Write([]byte(stream))
	u, ok := o.Usage()
	if !ok || u.PromptTokens != 25 || u.CompletionTokens != 15 || u.TotalTokens != 40 {
		t.Fatalf("usage %+v %v", u, ok)
	}
	if !o.Done() {
		t.Fatal("message_stop ends an Anthropic stream")
	}
}
