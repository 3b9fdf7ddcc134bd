package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/igw-dev/igw/pkg/openai"
)

// maxHeldEvent bounds the partial event a StreamBody holds back while it
// waits for the event's end. An event longer than this is passed on as it
// comes (and can no longer be cut before it); real token events are a few
// hundred bytes.
const maxHeldEvent = 1 << 20

// StreamBody meters a streamed (SSE) response on its way to the client. It
// counts the output tokens of every event (the server's usage when an
// event carries one, otherwise openai.CountTokens of the delta text: vLLM
// sends usage only at the end, and only when asked) and, under StreamCut,
// keeps the reservation ahead of them: when the output outgrows what is
// reserved it tops the reservation up, and when the budget has no room
// for an event it ends the stream before that event with an error event
// and `data: [DONE]`, and closes the model server's stream (which stops
// the generation).
//
// It forwards whole events only: a partial event at the end of a read is
// held back until its end arrives, so a cut never leaves half an event.
// Since model servers write (and flush) whole events, holding back costs
// no latency in practice.
//
// The error event is OpenAI's shape for an error inside a stream,
// `data: {"error": {...}}`, which the OpenAI SDKs raise as an APIError;
// `data: [DONE]` follows, as vLLM does after a stream error, so clients
// that wait for it end cleanly.
type StreamBody struct {
	src     io.ReadCloser
	ctx     context.Context
	res     *Reservation
	metrics *Metrics

	buf      []byte // read but not yet returned: [off:fwd) forwardable, [fwd:) held back
	off, fwd int
	scanned  int // events before buf[scanned] have been counted

	output  int64 // output tokens seen so far
	cut     bool
	tail    []byte // the closing events after a cut
	srcErr  error
	passAll bool // an over-long event was seen: everything passes unmetered
}

var _ io.ReadCloser = (*StreamBody)(nil)

// NewStreamBody meters src for res. ctx bounds top-ups of the reservation.
func NewStreamBody(ctx context.Context, src io.ReadCloser, res *Reservation, m *Metrics) *StreamBody {
	return &StreamBody{src: src, ctx: ctx, res: res, metrics: m, buf: make([]byte, 0, 32<<10)}
}

// OutputTokens is the output counted so far.
func (b *StreamBody) OutputTokens() int64 { return b.output }

// Cut reports whether the stream was ended for its budget.
func (b *StreamBody) Cut() bool { return b.cut }

// Close closes the model server's stream.
func (b *StreamBody) Close() error { return b.src.Close() }

// Read returns forwardable bytes: whole events, then (after a cut) the
// closing events, then io.EOF.
func (b *StreamBody) Read(p []byte) (int, error) {
	for {
		if b.off < b.fwd {
			n := copy(p, b.buf[b.off:b.fwd])
			b.off += n
			return n, nil
		}
		if b.cut {
			if len(b.tail) == 0 {
				return 0, io.EOF
			}
			n := copy(p, b.tail)
			b.tail = b.tail[n:]
			return n, nil
		}
		if b.srcErr != nil {
			if b.fwd < len(b.buf) { // a last event without its blank line
				b.countEvent(b.buf[b.fwd:])
				b.scanned, b.fwd = len(b.buf), len(b.buf)
				continue
			}
			return 0, b.srcErr
		}
		b.compact()
		if len(b.buf) == cap(b.buf) {
			b.buf = append(b.buf, 0)[:len(b.buf)]
		}
		n, err := b.src.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if err != nil {
			b.srcErr = err
		}
		if b.passAll {
			b.scanned, b.fwd = len(b.buf), len(b.buf)
			continue
		}
		b.scan()
	}
}

// compact drops what has been returned.
func (b *StreamBody) compact() {
	if b.off == 0 {
		return
	}
	n := copy(b.buf, b.buf[b.off:])
	b.buf = b.buf[:n]
	b.fwd -= b.off
	b.scanned -= b.off
	b.off = 0
}

// scan counts every complete event past b.scanned and moves fwd past the
// ones that fit; it cuts at the first that does not.
func (b *StreamBody) scan() {
	for {
		rest := b.buf[b.scanned:]
		end := eventEnd(rest)
		if end < 0 {
			if len(rest) > maxHeldEvent {
				// Not a token stream as model servers write them: pass
				// the rest through unmetered (usage, if the server sends
				// it, still settles the reservation).
				b.passAll = true
				b.scanned, b.fwd = len(b.buf), len(b.buf)
			}
			return
		}
		ev := rest[:end]
		if !b.admitEvent(ev) {
			b.cutHere()
			return
		}
		b.scanned += end
		b.fwd = b.scanned
	}
}

// admitEvent counts the event's tokens and, under StreamCut, makes sure the
// reservation covers them. It reports whether the event may be forwarded.
func (b *StreamBody) admitEvent(ev []byte) bool {
	prev := b.output
	b.countEvent(ev)
	if b.res == nil || b.res.stream != StreamCut || b.output <= b.res.ReservedOutput() || b.output == prev {
		return true
	}
	ok, err := b.res.Extend(b.ctx, b.output-b.res.ReservedOutput())
	if err != nil {
		// The store failed mid-stream: the request was admitted and is
		// counted; cutting a paid-for answer for our own outage would be
		// worse than letting it finish.
		return true
	}
	if !ok {
		b.output = prev // not forwarded
	}
	return ok
}

// cutHere ends the stream before the event at b.scanned.
func (b *StreamBody) cutHere() {
	b.cut = true
	b.buf = b.buf[:b.fwd]
	e := openai.NewError(http.StatusTooManyRequests, openai.ErrTypeRateLimit,
		fmt.Sprintf("Rate limit reached: the response was cut after %d output tokens because the token quota has no room for more.", b.output))
	b.tail = openai.StreamErrorEvent(openai.KindChat, e)
	_ = b.src.Close() // stops the generation
	b.metrics.StreamCut()
}

// eventEnd is the index after the blank line that ends the first event of
// p, or -1. Lines end in \n or \r\n.
func eventEnd(p []byte) int {
	i := 0
	for {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j + 1
		if k < len(p) && p[k] == '\n' {
			return k + 1
		}
		if k+1 < len(p) && p[k] == '\r' && p[k+1] == '\n' {
			return k + 2
		}
		i = k
	}
}

// streamChunk is what counting needs of an event: the text deltas of chat
// and completion chunks, the Responses API's text delta, and usage.
type streamChunk struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta *struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			ToolCalls        []struct {
				Function struct {
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
	Type  string          `json:"type"`
	Delta json.RawMessage `json:"delta"`
	Usage *struct {
		CompletionTokens int64 `json:"completion_tokens"`
		OutputTokens     int64 `json:"output_tokens"`
	} `json:"usage"`
}

// countEvent adds the output tokens of one event's data.
func (b *StreamBody) countEvent(ev []byte) {
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 || data[0] != '{' {
			continue // [DONE] or not JSON
		}
		var c streamChunk
		if json.Unmarshal(data, &c) != nil {
			continue
		}
		n := int64(0)
		for _, ch := range c.Choices {
			n += int64(openai.CountTokens(ch.Text))
			if d := ch.Delta; d != nil {
				n += int64(openai.CountTokens(d.Content) + openai.CountTokens(d.ReasoningContent))
				for _, tc := range d.ToolCalls {
					n += int64(openai.CountTokens(tc.Function.Arguments))
				}
			}
		}
		if c.Type == "response.output_text.delta" && len(c.Delta) > 0 && c.Delta[0] == '"' {
			var s string
			if json.Unmarshal(c.Delta, &s) == nil {
				n += int64(openai.CountTokens(s))
			}
		}
		b.output += n
		if u := c.Usage; u != nil {
			b.output = max(b.output, u.CompletionTokens, u.OutputTokens)
		}
	}
}
