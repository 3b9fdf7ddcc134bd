package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// SSEDone is the payload of the event that ends an OpenAI stream.
const SSEDone = "[DONE]"

// eventStream is the media type of server-sent events.
const eventStream = "text/event-stream"

// IsEventStream reports whether a Content-Type header is server-sent
// events (a streamed response).
func IsEventStream(contentType string) bool { return mediaType(contentType) == eventStream }

// IsJSON reports whether a Content-Type header is JSON (application/json
// or a +json type), the shape error bodies must have.
func IsJSON(contentType string) bool {
	mt := mediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// mediaType is a Content-Type's media type, lower-case, without
// parameters.
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// SSEWriter writes OpenAI server-sent events, flushing each one so a client
// sees every token as soon as it exists.
type SSEWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

// NewSSEWriter sets the event-stream headers and sends them.
func NewSSEWriter(w http.ResponseWriter) *SSEWriter {
	h := w.Header()
	h.Set("Content-Type", eventStream)
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	s := &SSEWriter{w: w, f: f}
	s.flush()
	return s
}

// Event writes one `data: <payload>\n\n` event and flushes it.
func (s *SSEWriter) Event(payload []byte) error {
	buf := make([]byte, 0, len(payload)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, payload...)
	buf = append(buf, '\n', '\n')
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	s.flush()
	return nil
}

// Done writes the terminating `data: [DONE]` event.
func (s *SSEWriter) Done() error { return s.Event([]byte(SSEDone)) }

// Flush sends what was written to the response so far, for callers that
// write events' bytes themselves.
func (s *SSEWriter) Flush() { s.flush() }

func (s *SSEWriter) flush() {
	if s.f != nil {
		s.f.Flush()
	}
}

// SSEReader reads the data payloads of a server-sent event stream as a
// client does: lines are accumulated until a blank line ends the event;
// comments and fields other than data are skipped.
type SSEReader struct {
	r *bufio.Reader
}

// NewSSEReader reads events from r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// ErrMalformedEvent reports a stream that ended inside an event.
var ErrMalformedEvent = errors.New("sse: stream ended inside an event")

// Next returns the data of the next event. It returns io.EOF at the end of
// the stream. The returned slice is only valid until the next call.
func (s *SSEReader) Next() ([]byte, error) {
	var data []byte
	have := false
	for {
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line: gather it whole.
			full := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = s.r.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if err != nil && (err != io.EOF || len(line) == 0) {
			if err == io.EOF && have {
				return data, nil
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if have {
				return data, nil
			}
			if err == io.EOF {
				return nil, io.EOF
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if have {
				data = append(data, '\n')
			}
			data = append(data, v...)
			have = true
		}
		if err == io.EOF {
			if have {
				return data, nil
			}
			return nil, io.EOF
		}
	}
}

// StreamErrorEvent is how a stream of API kind ends when it cannot go on:
// the last events a client reads, so a cut stream is never mistaken for a
// complete one. For the Responses API it is an `error` event (the SDKs
// raise it); for chat and completions OpenAI's in-stream error,
// `data: {"error": {...}}` (the SDKs raise it as an APIError), followed by
// `data: [DONE]` as vLLM sends after a stream error, so clients that wait
// for it end cleanly. For Anthropic's Messages API it is Anthropic's
// `event: error` with its error body (the SDKs raise it).
func StreamErrorEvent(kind Kind, e *Error) []byte {
	var b bytes.Buffer
	if kind == KindMessages {
		b.WriteString("event: error\ndata: ")
		b.Write(e.AnthropicJSON())
		b.WriteString("\n\n")
		return b.Bytes()
	}
	if kind == KindResponses {
		b.WriteString("event: error\ndata: ")
		body, _ := json.Marshal(struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
			Param   any    `json:"param"`
		}{"error", e.Type, e.Message, nil})
		b.Write(body)
		b.WriteString("\n\n")
		return b.Bytes()
	}
	b.WriteString("data: ")
	b.Write(e.JSON())
	b.WriteString("\n\ndata: ")
	b.WriteString(SSEDone)
	b.WriteString("\n\n")
	return b.Bytes()
}
