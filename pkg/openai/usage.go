package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"strings"
)

// maxUsageBytes bounds what a UsageObserver keeps of a response, so a
// misbehaving model server cannot make the gateway buffer without limit: an
// SSE line longer than this is skipped (whether it arrives in one chunk or
// many, so the result never depends on chunking), and so is a JSON "usage"
// value longer than this. Real usage lines are a few hundred bytes; the bound
// leaves room for a final chunk that also carries content or logprobs.
const maxUsageBytes = 64 << 10

// maxKeyBytes bounds the quoted top-level keys a JSON scan keeps. "usage"
// written with every letter as a \u escape is 32 bytes, so no spelling of it
// is lost.
const maxKeyBytes = 64

type usageMode uint8

const (
	modeNone usageMode = iota
	modeSSE
	modeJSON
)

// UsageObserver extracts the token usage of a model server's response while
// the response streams through the gateway to the client, so that quotas and
// cost metrics get the server's own counts without the gateway buffering or
// delaying a single byte. Both the HTTP proxy (through io.TeeReader or
// io.MultiWriter) and the ext_proc adapter (one Write per body chunk) feed it
// the body in chunks of any size; chunk boundaries may fall anywhere, and
// the result never depends on where they fall.
//
// For an SSE stream (text/event-stream) every line is examined, carrying at
// most one partial line between chunks. Only `data:` lines that hold a
// "usage" key with an object value are decoded, so ordinary token chunks cost
// a few byte scans and no allocation; the last usage object wins. OpenAI's
// `"usage":null` on every chunk and vLLM's continuous usage stats both work,
// as does the Responses API's usage nested in `response`. Lines longer than
// 64 KiB are skipped. Each data line is taken as one JSON document: events
// that split their JSON over several data lines (which no OpenAI-compatible
// server sends) are not understood.
//
// For a JSON document (application/json) a small state machine follows the
// document's structure across chunks (strings, escapes, nesting) and copies
// only the value of the top-level "usage" key. It is exact where a window
// search is a guess: text that looks like a usage object inside a string or
// a nested "usage" key cannot fool it, usage may come anywhere in the
// document, and bodies of any size cost O(1) memory. The price is looking at
// every byte outside strings (strings, where the bulk of a response is, are
// skipped with a vectorised search). Top-level keys match case-sensitively,
// after unescaping.
//
// Compressed bodies are not decoded: the observer must see the identity
// encoding, so the proxy should not ask model servers for compression.
//
// A UsageObserver is not safe for concurrent use: call Usage and Done after
// the last Write, or from the goroutine that writes.
type UsageObserver struct {
	mode usageMode

	usage Usage
	found bool
	done  bool
	token bool // a data event carried generated output

	// SSE: the partial line carried from the previous chunk, or, when
	// skipLine is set, the rest of an over-long line to drop.
	carry    []byte
	skipLine bool

	js jsonUsageScan
}

// The observer is fed as a writer, so a tee of the response body can drive it.
var _ io.Writer = (*UsageObserver)(nil)

// NewUsageObserver returns an observer for a response with the given
// Content-Type header: text/event-stream is read as SSE, application/json
// (or any +json type) as one JSON document, and anything else is ignored,
// since it cannot carry OpenAI usage. The caller need not special-case
// error or non-OpenAI responses.
func NewUsageObserver(contentType string) *UsageObserver {
	mt := mediaType(contentType)
	o := &UsageObserver{}
	switch {
	case mt == eventStream:
		o.mode = modeSSE
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		o.mode = modeJSON
	}
	return o
}

// Write observes the next chunk of the response body. It never fails and
// never keeps p, so it can sit in an io.MultiWriter next to the client.
func (o *UsageObserver) Write(p []byte) (int, error) {
	switch o.mode {
	case modeSSE:
		o.writeSSE(p)
	case modeJSON:
		if u, ok := o.js.write(p); ok {
			o.usage, o.found = u, true
		}
	}
	return len(p), nil
}

// Usage returns the last usage object the server sent and whether there was
// one. TotalTokens is computed when the server left it out, and the
// Responses API's input/output token names are mapped onto the chat names.
// An SSE stream whose last line lacks its newline has that line considered
// too, so a stream cut just before its terminator is still accounted.
func (o *UsageObserver) Usage() (Usage, bool) {
	u, found := o.usage, o.found
	if v, ok := o.pendingData(); ok {
		if pu, pok := dataUsage(v); pok {
			u, found = mergeUsage(u, found, pu), true
		}
	}
	if !found {
		return Usage{}, false
	}
	if u.PromptTokensDetails != nil { // do not hand out our own pointer
		d := *u.PromptTokensDetails
		u.PromptTokensDetails = &d
	}
	return u, true
}

// Done reports whether the response reached its end marker: `data: [DONE]`
// for an SSE stream, the closing brace of the document for JSON. A response
// that ends without it was cut short, and its usage (if any) may be missing.
func (o *UsageObserver) Done() bool {
	switch o.mode {
	case modeSSE:
		if o.done {
			return true
		}
		v, ok := o.pendingData()
		return ok && isDone(v)
	case modeJSON:
		return o.js.complete
	}
	return false
}

// pendingData is the payload of the unterminated last line of an SSE
// stream, if that line is a data line the observer kept.
func (o *UsageObserver) pendingData() ([]byte, bool) {
	if o.mode != modeSSE || o.skipLine {
		return nil, false
	}
	return sseData(o.carry)
}

// writeSSE splits p into lines, completing the carried partial line first.
// A line ends at \n, \r or \r\n; the empty line a \r\n pair yields when it is
// split over two chunks is harmless, since only data lines matter.
func (o *UsageObserver) writeSSE(p []byte) {
	// Positions of the next \n and \r at or after i, found once per scan so
	// a chunk of many lines stays linear; -1 means none left in p.
	nextLF, nextCR := -2, -2
	i := 0
	for i < len(p) {
		if nextLF != -1 && nextLF < i {
			nextLF = indexFrom(p, i, '\n')
		}
		if nextCR != -1 && nextCR < i {
			nextCR = indexFrom(p, i, '\r')
		}
		end := nextLF
		if end < 0 || (nextCR >= 0 && nextCR < end) {
			end = nextCR
		}
		if end < 0 { // no line end: carry the rest
			o.carryLine(p[i:])
			return
		}
		switch {
		case o.skipLine:
			o.skipLine = false
		case len(o.carry) > 0:
			o.carryLine(p[i:end])
			if !o.skipLine {
				o.sseLine(o.carry)
			}
			o.skipLine = false
		case end-i <= maxUsageBytes:
			o.sseLine(p[i:end])
		}
		o.carry = o.carry[:0]
		i = end + 1
	}
}

func indexFrom(p []byte, i int, c byte) int {
	j := bytes.IndexByte(p[i:], c)
	if j < 0 {
		return -1
	}
	return i + j
}

// carryLine appends part of a line to the carry buffer, or marks the line as
// too long to keep.
func (o *UsageObserver) carryLine(b []byte) {
	if o.skipLine {
		return
	}
	if len(o.carry)+len(b) > maxUsageBytes {
		o.skipLine = true
		o.carry = o.carry[:0]
		return
	}
	o.carry = appendBounded(o.carry, b)
}

func (o *UsageObserver) sseLine(line []byte) {
	v, ok := sseData(line)
	if !ok {
		return
	}
	if isDone(v) || isMessageStop(v) {
		o.done = true
		return
	}
	if !o.token && carriesToken(v) {
		o.token = true
	}
	if u, ok := dataUsage(v); ok {
		o.usage, o.found = mergeUsage(o.usage, o.found, u), true
	}
}

// SawToken reports whether an event of the stream carried generated
// output yet: the first token, as a client measures time to first token.
// A chat stream's first event (the assistant role with empty content)
// and usage-only events do not count; engines send the former before
// prefill even starts, so it says nothing about the model's speed.
func (o *UsageObserver) SawToken() bool { return o.token }

// tokenKeys are the string fields that carry generated output in stream
// events: chat deltas (content, reasoning), completions (text), the
// Responses API's and Anthropic's deltas (delta, text, partial_json).
var tokenKeys = [...]string{`"content":"`, `"text":"`, `"reasoning_content":"`, `"reasoning":"`, `"delta":"`, `"partial_json":"`}

// carriesToken reports whether an event's payload has a non-empty output
// string or a tool call. It is a filter over compact JSON (what engines
// send), not a parser.
func carriesToken(v []byte) bool {
	for _, k := range tokenKeys {
		for b := v; ; {
			i := bytes.Index(b, []byte(k))
			if i < 0 {
				break
			}
			b = b[i+len(k):]
			if len(b) > 0 && b[0] != '"' {
				return true
			}
		}
	}
	return bytes.Contains(v, []byte(`"tool_calls":[{`))
}

// mergeUsage is the usage after a stream's next usage object: the latest,
// except that one without input tokens keeps the earlier input count, as
// Anthropic's stream sends it (input in message_start, the output count in
// message_delta).
func mergeUsage(prev Usage, had bool, next Usage) Usage {
	if had && next.PromptTokens == 0 && prev.PromptTokens > 0 {
		next.PromptTokens = prev.PromptTokens
		next.TotalTokens = next.PromptTokens + next.CompletionTokens
		if next.PromptTokensDetails == nil {
			next.PromptTokensDetails = prev.PromptTokensDetails
		}
	}
	return next
}

// isMessageStop reports whether an event is Anthropic's message_stop, the
// end of a Messages API stream (which has no [DONE]).
func isMessageStop(data []byte) bool {
	if len(data) > 64 || !bytes.Contains(data, []byte(`"message_stop"`)) {
		return false
	}
	s, e, ok := topLevelValue(data, "type")
	return ok && string(data[s:e]) == `"message_stop"`
}

const (
	dataPrefix = "data:"
	usageKey   = `"usage"`
)

// sseData returns the payload of a data line.
func sseData(line []byte) ([]byte, bool) {
	v, ok := bytes.CutPrefix(line, []byte(dataPrefix))
	if !ok {
		return nil, false
	}
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return v, true
}

func isDone(data []byte) bool {
	return len(data) < 2*len(SSEDone) && string(bytes.TrimSpace(data)) == SSEDone
}

// dataUsage decodes the usage of one data payload. The quick scan for a
// "usage" key followed by an object keeps token chunks (with no usage, or
// OpenAI's "usage":null) away from the JSON decoder.
func dataUsage(v []byte) (Usage, bool) {
	if !mayHoldUsageObject(v) {
		return Usage{}, false
	}
	if s, e, ok := topLevelValue(v, "usage"); ok && v[s] == '{' {
		return decodeUsage(v[s:e])
	}
	// The Responses API nests it: {"type":"response.completed","response":{…,"usage":{…}}};
	// Anthropic's message_start: {"type":"message_start","message":{…,"usage":{…}}}.
	for _, outer := range [...]string{"response", "message"} {
		if s, e, ok := topLevelValue(v, outer); ok && v[s] == '{' {
			r := v[s:e]
			if s, e, ok := topLevelValue(r, "usage"); ok && r[s] == '{' {
				return decodeUsage(r[s:e])
			}
		}
	}
	return Usage{}, false
}

// mayHoldUsageObject reports whether b has `"usage"`, optional space, a
// colon, optional space and an opening brace. It is a filter, not a parser.
func mayHoldUsageObject(b []byte) bool {
	for {
		i := bytes.Index(b, []byte(usageKey))
		if i < 0 {
			return false
		}
		b = b[i+len(usageKey):]
		j := skipSpace(b, 0)
		if j < len(b) && b[j] == ':' {
			j = skipSpace(b, j+1)
			if j < len(b) && b[j] == '{' {
				return true
			}
		}
	}
}

// usageWire accepts both the chat/completions names and the Responses API's.
type usageWire struct {
	Usage
	InputTokens        int                  `json:"input_tokens"`
	OutputTokens       int                  `json:"output_tokens"`
	InputTokensDetails *PromptTokensDetails `json:"input_tokens_details"`
}

// decodeUsage decodes a usage object, filling in what the server left out.
// Negative counts are rejected rather than credited back to a quota.
func decodeUsage(b []byte) (Usage, bool) {
	var w usageWire
	if json.Unmarshal(b, &w) != nil {
		return Usage{}, false
	}
	u := w.Usage
	if u.PromptTokens == 0 {
		u.PromptTokens = w.InputTokens
	}
	if u.CompletionTokens == 0 {
		u.CompletionTokens = w.OutputTokens
	}
	if u.PromptTokensDetails == nil {
		u.PromptTokensDetails = w.InputTokensDetails
	}
	if u.PromptTokens < 0 || u.CompletionTokens < 0 || u.TotalTokens < 0 ||
		(u.PromptTokensDetails != nil && u.PromptTokensDetails.CachedTokens < 0) {
		return Usage{}, false
	}
	if u.TotalTokens == 0 {
		if u.PromptTokens > math.MaxInt-u.CompletionTokens {
			return Usage{}, false
		}
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u, true
}

// jsonUsageScan follows a JSON document fed in chunks far enough to find the
// value of its top-level "usage" key: string and escape state, nesting depth,
// and whether the next string at depth 1 is a key. It copies only that key's
// quoted name (bounded) and its value (bounded).
type jsonUsageScan struct {
	started  bool // the top-level '{' was seen
	complete bool // the top-level object closed
	dead     bool // nothing more to learn: complete, or not an object

	depth     int
	inString  bool
	escape    bool // the previous byte in the string was an unescaped backslash
	strIsKey  bool
	expectKey bool // the next string is a key (only read at depth 1, which is always the top-level object)
	keyUsage  bool // the last key at depth 1 was "usage"
	armed     bool // after `"usage":`, waiting for its value

	key     [maxKeyBytes]byte
	keyLen  int
	keyOver bool

	capturing bool
	capOver   bool
	capBuf    []byte
}

// write scans p and returns a usage object completed within it, if any (the
// last one, should the document repeat the key).
func (s *jsonUsageScan) write(p []byte) (u Usage, found bool) {
	if s.dead {
		return Usage{}, false
	}
	capStart := 0 // start in p of the usage value being copied
	i := 0
	for i < len(p) {
		if s.inString {
			if s.escape { // the chunk starts with the byte a backslash escaped
				s.escape = false
				s.appendKey(p[i : i+1])
				i++
				continue
			}
			// No byte before i can escape what follows: it is the opening
			// quote, an escaped byte or an escaped quote. So backslashes
			// are counted from i only.
			q := bytes.IndexByte(p[i:], '"')
			if q < 0 {
				s.escape = trailingBackslashes(p[i:])%2 == 1
				s.appendKey(p[i:])
				break
			}
			q += i
			escaped := trailingBackslashes(p[i:q])%2 == 1
			s.appendKey(p[i : q+1])
			i = q + 1
			if escaped {
				continue
			}
			s.inString = false
			if s.strIsKey {
				s.keyUsage = !s.keyOver && keyEquals(s.key[:s.keyLen], "usage")
			}
			continue
		}
		switch c := p[i]; c {
		case ' ', '\t', '\n', '\r':
		case '"':
			if s.depth == 0 {
				s.dead = true
				return u, found
			}
			s.inString, s.escape = true, false
			s.strIsKey = s.depth == 1 && s.expectKey
			s.keyLen, s.keyOver = 0, false
			if s.strIsKey {
				s.appendKey(p[i : i+1])
			}
			s.armed = false
		case '{', '[':
			if s.depth == 0 {
				if s.started || c != '{' {
					s.dead = true
					return u, found
				}
				s.started = true
			}
			if s.armed && c == '{' {
				s.capturing, s.capOver = true, false
				s.capBuf = s.capBuf[:0]
				capStart = i
			}
			s.armed = false
			s.depth++
			s.expectKey = c == '{'
		case '}', ']':
			s.depth--
			if s.depth <= 0 {
				s.complete = s.depth == 0 && c == '}'
				s.dead = true
				return u, found
			}
			s.expectKey = false
			if s.capturing && s.depth == 1 {
				s.capturing = false
				s.appendCap(p[capStart : i+1])
				if !s.capOver {
					if cu, ok := decodeUsage(s.capBuf); ok {
						u, found = cu, true
					}
				}
			}
		case ',':
			s.expectKey = s.depth == 1
			s.armed = false
		case ':':
			if s.depth == 1 {
				s.armed = s.keyUsage
			}
			s.keyUsage = false
			s.expectKey = false
		default: // a number, true, false or null, or garbage
			if s.depth == 0 {
				s.dead = true
				return u, found
			}
			s.armed = false
		}
		i++
	}
	if s.capturing {
		s.appendCap(p[capStart:])
	}
	return u, found
}

func (s *jsonUsageScan) appendKey(b []byte) {
	if !s.strIsKey || s.keyOver {
		return
	}
	if s.keyLen+len(b) > len(s.key) {
		s.keyOver = true
		return
	}
	s.keyLen += copy(s.key[s.keyLen:], b)
}

func (s *jsonUsageScan) appendCap(b []byte) {
	if s.capOver {
		return
	}
	if len(s.capBuf)+len(b) > maxUsageBytes {
		s.capOver = true
		s.capBuf = s.capBuf[:0]
		return
	}
	s.capBuf = appendBounded(s.capBuf, b)
}

// appendBounded appends b to buf, whose length stays within maxUsageBytes,
// growing it so that its capacity stays within the bound too.
func appendBounded(buf, b []byte) []byte {
	if need := len(buf) + len(b); need > cap(buf) {
		nb := make([]byte, len(buf), min(max(2*cap(buf), need, 512), maxUsageBytes))
		copy(nb, buf)
		buf = nb
	}
	return append(buf, b...)
}

// trailingBackslashes counts the backslashes at the end of b.
func trailingBackslashes(b []byte) int {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\\' {
		n++
	}
	return n
}
