package openai

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

// SSEDone is the payload of the event that ends an OpenAI stream.
const SSEDone = "[DONE]"

// SSEWriter writes OpenAI server-sent events, flushing each one so a client
// sees every token as soon as it exists.
type SSEWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

// NewSSEWriter sets the event-stream headers and sends them.
func NewSSEWriter(w http.ResponseWriter) *SSEWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
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
