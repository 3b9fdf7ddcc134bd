package openai

import (
	"bytes"
	"encoding/json"
)

// replacer rewrites every occurrence of old with new in a stream fed in
// chunks, whatever the chunk boundaries: a chunk's tail that could be the
// start of old (a proper prefix of it) is held back until the next chunk
// decides. So at most len(old)-1 bytes are delayed, and only when a chunk
// ends inside something that looks like the pattern; an SSE event, which
// ends with a blank line, is never delayed.
type replacer struct {
	old, new []byte
	carry    []byte
}

// write returns the rewritten bytes of carry+p that are decided. final
// forces everything out (the end of the stream, or a body mode in which
// nothing may be held). The result may alias p when nothing was rewritten
// or held.
func (r *replacer) write(p []byte, final bool) []byte {
	buf := p
	if len(r.carry) > 0 {
		buf = make([]byte, 0, len(r.carry)+len(p))
		buf = append(append(buf, r.carry...), p...)
		r.carry = r.carry[:0]
	}
	var out []byte
	i := 0
	for {
		j := bytes.Index(buf[i:], r.old)
		if j < 0 {
			break
		}
		if out == nil {
			out = make([]byte, 0, len(buf)+len(r.new)-len(r.old))
		}
		out = append(out, buf[i:i+j]...)
		out = append(out, r.new...)
		i += j + len(r.old)
	}
	rest := buf[i:]
	hold := 0
	if !final {
		hold = partialSuffix(rest, r.old)
		r.carry = append(r.carry, rest[len(rest)-hold:]...)
	}
	if out == nil {
		return buf[:len(buf)-hold]
	}
	return append(out, rest[:len(rest)-hold]...)
}

// partialSuffix is the length of the longest suffix of b that is a proper
// prefix of pat: the bytes that may begin an occurrence cut by the chunk's
// end.
func partialSuffix(b, pat []byte) int {
	from := max(0, len(b)-len(pat)+1)
	for i := from; i < len(b); i++ {
		if b[i] == pat[0] && bytes.HasPrefix(pat, b[i:]) {
			return len(b) - i
		}
	}
	return 0
}

// ModelRestorer gives a response back the model name the client asked for
// when the request was sent to a rewritten target (InferenceModelRewrite):
// every `"model":"<target>"` and `"model": "<target>"` (the spellings of
// Go, vLLM, SGLang and Python's json) becomes the requested name, in JSON
// bodies and in each SSE event. A JSON string value cannot contain the
// pattern (its quotes would be escaped), so text the model generates is
// never touched. Other spellings (other spacing, escaped characters in the
// name) pass unchanged.
type ModelRestorer struct {
	compact, spaced replacer
}

// NewModelRestorer restores requested where a response names target. Both
// data planes use it, so a client sees the model it asked for whichever
// plane served it.
func NewModelRestorer(target, requested string) *ModelRestorer {
	t, r := jsonString(target), jsonString(requested)
	return &ModelRestorer{
		compact: replacer{old: concat(`"model":`, t), new: concat(`"model":`, r)},
		spaced:  replacer{old: concat(`"model": `, t), new: concat(`"model": `, r)},
	}
}

// Write returns the rewritten bytes of p that are decided; unless final it
// may hold back a few bytes (a pattern cut by the chunk's end) for the next
// call. final forces everything out.
func (m *ModelRestorer) Write(p []byte, final bool) []byte {
	return m.spaced.write(m.compact.write(p, final), final)
}

func concat(a string, b []byte) []byte { return append([]byte(a), b...) }

// jsonString quotes s as a JSON string the way model servers do: no HTML
// escaping.
func jsonString(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
