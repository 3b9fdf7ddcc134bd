package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// The HTTP front bounds what a client can make the gateway hold while it
// sends a request body: time (a pause over bodyIdle, or a rate under
// minBodyRate once the grace has passed, ends the read with 408 and closes
// the connection) and bytes (the buffers of all bodies in flight together
// stay under maxBufferedBodyBytes; a body that would go over gets 503).
// Nothing waits on a client without a deadline, and nothing a client
// declares is allocated before its bytes arrive.

// bodyPace is how fast a request body must arrive (the Gateway's
// settings, swapped whole on reload).
type bodyPace struct {
	idle, grace time.Duration
	rate        int64 // bytes per second after grace; 0: no rate
}

// applyFront takes the body settings of cfg: pace and budget apply to
// bodies read from now on.
func (s *Server) applyFront(cfg *config.Config) {
	spec := gatewaySpec(cfg)
	idle, grace, rate, buffered, _ := spec.front()
	s.pace.Store(&bodyPace{idle: idle, grace: grace, rate: rate})
	s.budget.limit.Store(buffered)
}

// errBodyTimeout is a body read cut off by its deadline.
type errBodyTimeout struct{ err error }

func (e *errBodyTimeout) Error() string {
	return "the request body was sent too slowly: " + e.err.Error()
}
func (e *errBodyTimeout) Unwrap() error { return e.err }

// pacedReader sets the connection's read deadline before every read of a
// body: the earlier of now+idle and the time by which the bytes received
// so far should have arrived at the minimum rate (after the grace).
type pacedReader struct {
	r        io.Reader
	rc       *http.ResponseController
	pace     *bodyPace
	start    time.Time
	declared int64 // Content-Length, -1 when unknown
	received int64
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.declared >= 0 && p.received >= p.declared {
		// The read that finds the end does not touch the connection,
		// and net/http's background read starts with it: no deadline
		// of the body's may cut that one off.
		_ = p.rc.SetReadDeadline(time.Time{})
		return p.r.Read(b)
	}
	deadline := time.Now().Add(p.pace.idle)
	if p.pace.rate > 0 {
		due := p.start.Add(p.pace.grace + time.Duration(float64(p.received)/float64(p.pace.rate)*float64(time.Second)))
		if due.Before(deadline) {
			deadline = due
		}
	}
	// A connection that cannot take deadlines (none in net/http's
	// servers) is read without them.
	_ = p.rc.SetReadDeadline(deadline)
	n, err := p.r.Read(b)
	p.received += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && (errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(deadline)) {
		err = &errBodyTimeout{err}
	}
	return n, err
}

// readRequestBody reads r's body under the body limit, pace and budget, or
// answers the client itself (and returns nil): 413 over the limit, 408
// when sent too slowly, 503 when the budget is spent, 400 when the read
// failed otherwise.
func (s *Server) readRequestBody(w http.ResponseWriter, r *http.Request) *body {
	limit := s.director.Policy().MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBodySize
	}
	rc := http.NewResponseController(w)
	in := &pacedReader{r: r.Body, rc: rc, pace: s.pace.Load(), start: time.Now(), declared: r.ContentLength}
	b, err := s.bodies.readBody(in, r.ContentLength, limit, &s.budget)
	if err == nil {
		// Back to net/http's own deadlines (none after the headers).
		_ = rc.SetReadDeadline(time.Time{})
		return b
	}
	// The rest of the body is left unread and the connection closed after
	// the answer: a deadline already passed stops net/http from waiting
	// to discard what the client may never send.
	_ = rc.SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	var tooBig *errBodyTooLarge
	var slow *errBodyTimeout
	switch {
	case errors.As(err, &tooBig):
		// The same words as igw epp's, which cannot know the size.
		msg := fmt.Sprintf("the request body is over the limit of %d bytes", limit)
		writeReply(w, s.director.Refuse(r.URL.Path, openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest, msg)))
	case errors.As(err, &slow):
		s.metrics.BodyRejected(telemetry.BodyRejectedTimeout)
		writeReply(w, s.director.Refuse(r.URL.Path, openai.NewError(http.StatusRequestTimeout, openai.ErrTypeInvalidRequest,
			"the request body was sent too slowly")))
	case errors.Is(err, errBodyCapacity):
		s.metrics.BodyRejected(telemetry.BodyRejectedCapacity)
		w.Header().Set("Retry-After", "1")
		writeReply(w, s.director.Refuse(r.URL.Path, openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable,
			"the gateway is holding too many request bodies; retry shortly")))
	default:
		writeReply(w, s.director.Refuse(r.URL.Path, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "could not read the request body")))
	}
	return nil
}

// cleanPaths answers 404 in the API's shape for a path that is not in
// canonical form (with "..", "." or "//" segments) instead of letting
// ServeMux redirect it with a plain-text 301: no client of the API
// follows such a redirect, and the gateway never rewrites what a client
// asked for.
func (s *Server) cleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p != "" && p[0] == '/' && cleanPath(p) != p {
			writeReply(w, s.director.Refuse(p, director.NoAPI(r.Method, p)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath is ServeMux's canonical form of p: path.Clean, keeping a
// trailing slash.
func cleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// methodNotAllowed answers 405 in the API's shape with the Allow header,
// where ServeMux would answer in plain text.
func (s *Server) methodNotAllowed(allow ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reply := s.director.Refuse(r.URL.Path, openai.NewError(http.StatusMethodNotAllowed, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("%s takes %s, not %s", openai.Echo(r.URL.Path), strings.Join(allow, " or "), r.Method)))
		reply.Header.Set("Allow", strings.Join(allow, ", "))
		writeReply(w, reply)
	}
}
