// Package envoytest drives an Envoy ext_proc server (igw epp, igw bbr, or
// any conforming Endpoint Picker) the way Envoy's ext_proc filter does: one
// Process stream per HTTP request, the messages in Envoy's order for the
// FULL_DUPLEX_STREAMED and BUFFERED body modes, responses read concurrently
// with sending (as Envoy does, so large bodies cannot deadlock on gRPC flow
// control), and the server's mutations applied to the request and response
// as Envoy would forward them. Tests and benchmarks use it over real
// loopback gRPC connections; every exchange keeps a transcript that golden
// files can compare.
package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// Mode is the body send mode Envoy is configured with, for requests and
// responses alike.
type Mode = filterv3.ProcessingMode_BodySendMode

// The modes the client implements.
const (
	FullDuplex = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	Buffered   = filterv3.ProcessingMode_BUFFERED
)

// Request is the HTTP request Envoy received from the client.
type Request struct {
	// Headers, including the pseudo-headers :method, :path, :authority.
	Headers map[string]string
	// Body; nil means a header-only request (end_of_stream on headers).
	Body []byte
	// ChunkSize splits Body into messages of this size in FULL_DUPLEX mode
	// (0: one message). BUFFERED mode always sends one message.
	ChunkSize int
	// Splits, when set, cut Body at these offsets instead (out-of-range and
	// unordered offsets are ignored; empty chunks are sent as they are).
	Splits []int
	// Mode is the body mode of both directions (default FullDuplex).
	Mode Mode
	// NoProtocolConfig leaves protocol_config out of the first message, as
	// older Envoys do.
	NoProtocolConfig bool
	// Metadata is the request's metadata_context (e.g. a subset hint).
	Metadata *corev3.Metadata
	// Trailers, if any, follow the body.
	Trailers map[string]string
}

// Response is what the upstream model server answers; the client plays it
// through the processor when the request was not rejected.
type Response struct {
	// Status and Headers are the model server's (":status" is added).
	Status  int
	Headers map[string]string
	// Chunks are the body as it arrives; none means a header-only response.
	Chunks [][]byte
	// Metadata is the response-phase metadata_context (the served
	// endpoint).
	Metadata *corev3.Metadata
	// OnChunk, if set, makes the client wait after each chunk (FULL_DUPLEX)
	// for one answer (all answers for the last chunk) and then see the
	// bytes forwarded so far, so a test can check that a chunk passed
	// through before the next one was sent. Chunks must then not end
	// inside a pattern the processor rewrites (it would hold bytes back).
	OnChunk func(i int, forwarded []byte)
}

// Result is what Envoy would do with the request and response.
type Result struct {
	// Immediate is set when the processor answered with an
	// ImmediateResponse; nothing else is then meaningful.
	Immediate *extprocv3.ImmediateResponse
	// RequestHeaders are the request headers Envoy forwards upstream, after
	// the processor's mutations (lower-case names).
	RequestHeaders map[string]string
	// SetRequestHeaders are the header values the processor set (in any
	// request-phase response); RemovedRequestHeaders those it removed.
	SetRequestHeaders     map[string]string
	RemovedRequestHeaders []string
	// ClearRouteCache reports whether a request-phase response asked for it.
	ClearRouteCache bool
	// Body is the request body Envoy forwards upstream.
	Body []byte
	// BodyChunks are the FULL_DUPLEX body messages the processor sent back.
	BodyChunks [][]byte
	// Metadata is the dynamic metadata of the request phase.
	Metadata *structpb.Struct
	// ResponseHeaders are the response headers Envoy forwards downstream;
	// ResponseBody the response body.
	ResponseHeaders map[string]string
	ResponseBody    []byte
	// log has every message, in order, rendered by Transcript on demand
	// (formatting them on every exchange would cost more than the
	// exchange).
	log []any
}

// Transcript has one line per message, in order, for golden files.
func (r *Result) Transcript() []string {
	out := make([]string, len(r.log))
	for i, m := range r.log {
		switch m := m.(type) {
		case *extprocv3.ProcessingRequest:
			out[i] = "envoy → " + describeRequest(m)
		case *extprocv3.ProcessingResponse:
			out[i] = "proc  → " + describe(m)
		}
	}
	return out
}

// Status is the ImmediateResponse's HTTP status, or 0 when the processor
// let the request through.
func (r *Result) Status() int {
	if r.Immediate == nil {
		return 0
	}
	return int(r.Immediate.GetStatus().GetCode())
}

// ImmediateHeader is a header the ImmediateResponse sets ("" if none), such
// as the dropped-request reason.
func (r *Result) ImmediateHeader(name string) string {
	for _, h := range r.Immediate.GetHeaders().GetSetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), name) {
			return headerValue(h.GetHeader())
		}
	}
	return ""
}

// MetadataString reads the request phase's dynamic metadata
// namespace/key as a string, e.g. envoy.lb/x-gateway-destination-endpoint.
func (r *Result) MetadataString(namespace, key string) string {
	return r.Metadata.GetFields()[namespace].GetStructValue().GetFields()[key].GetStringValue()
}

// Exchange plays one HTTP request (and, unless it is rejected, resp; nil
// stops after the request phase) through a new Process stream on conn.
func Exchange(ctx context.Context, conn grpc.ClientConnInterface, req *Request, resp *Response) (*Result, error) {
	s, err := Start(ctx, conn, req)
	if err != nil {
		return s.Result(), err
	}
	if s.Result().Immediate == nil && resp != nil {
		if err := s.Respond(resp); err != nil {
			s.cancel()
			return s.Result(), err
		}
	}
	return s.Result(), s.Close()
}

// Stream is one request in progress: the request phase is done, the
// response phase can follow once the caller has the upstream's response
// (for example by forwarding the request to the chosen endpoint).
type Stream struct {
	stream extprocv3.ExternalProcessor_ProcessClient
	ctx    context.Context
	cancel context.CancelFunc
	req    *Request
	res    *Result
	recv   chan recvd
	sent   bool
	// logMu guards res.log: RespondStream sends body chunks from one
	// goroutine while another reads the processor's answers.
	logMu sync.Mutex
}

// Start opens a Process stream on conn and plays req's request phase. On
// error the stream is already cancelled.
func Start(ctx context.Context, conn grpc.ClientConnInterface, req *Request) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	e := &Stream{ctx: ctx, cancel: cancel, req: req, res: &Result{}, recv: make(chan recvd, 16)}
	if e.req.Mode == 0 {
		e.req.Mode = FullDuplex
	}
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		cancel()
		return e, fmt.Errorf("envoytest: open stream: %w", err)
	}
	e.stream = stream
	go e.readLoop()
	if err := e.requestPhase(); err != nil {
		cancel()
		return e, err
	}
	return e, nil
}

// Result is what the exchange produced so far.
func (e *Stream) Result() *Result { return e.res }

// Respond plays the upstream response through the processor.
func (e *Stream) Respond(resp *Response) error { return e.responsePhase(resp) }

// StreamedResponse is an upstream response whose body is still arriving.
// Response takes the body up front, which cannot show what a client of a
// streamed (SSE) answer sees: Envoy forwards each piece as the model server
// produces it, and so must a test that plays Envoy.
type StreamedResponse struct {
	// Status and Headers are the model server's (":status" is added).
	Status  int
	Headers map[string]string
	// Metadata is the response-phase metadata_context (see Served).
	Metadata *corev3.Metadata
	// Body is read until io.EOF; each Read's bytes go to the processor as
	// one response_body message, and the end as an empty message with
	// end_of_stream, as Envoy sends a body whose end it learns only when
	// the upstream finishes. Nil means a header-only response.
	Body io.Reader
}

// streamReadSize is how much of a streamed response body RespondStream
// reads at once: one SSE event is far smaller, so every event the model
// server flushes goes to the processor on its own.
const streamReadSize = 32 << 10

// RespondStream plays resp through the processor while its body is still
// arriving. onHeaders gets the response headers Envoy forwards downstream
// (after the processor's mutation, ":status" included) before any body;
// onChunk gets each body chunk the processor sends back, in order, as soon
// as it arrives. An error from either, or from reading Body, ends the
// exchange. RespondStream owns Body: it closes it (if it is an io.Closer)
// before it returns, which also stops a read that would block. Result()
// then has ResponseHeaders but not ResponseBody: a stream can be long.
//
// In BUFFERED mode the processor sees the whole body at once, as with
// Respond, so the callbacks run once the body has ended.
func (e *Stream) RespondStream(resp *StreamedResponse, onHeaders func(map[string]string) error, onChunk func([]byte) error) error {
	if c, ok := resp.Body.(io.Closer); ok {
		defer c.Close()
	}
	if e.req.Mode == Buffered || resp.Body == nil {
		r := &Response{Status: resp.Status, Headers: resp.Headers, Metadata: resp.Metadata}
		if resp.Body != nil {
			all, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("envoytest: reading the response body: %w", err)
			}
			r.Chunks = [][]byte{all}
		}
		if err := e.responsePhase(r); err != nil {
			return err
		}
		if err := onHeaders(e.res.ResponseHeaders); err != nil {
			return err
		}
		if len(e.res.ResponseBody) > 0 {
			return onChunk(e.res.ResponseBody)
		}
		return nil
	}

	res := e.res
	res.ResponseHeaders = lower(resp.Headers)
	res.ResponseHeaders[":status"] = strconv.Itoa(resp.Status)
	if err := e.send(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(res.ResponseHeaders)}},
		MetadataContext: resp.Metadata,
	}); err != nil {
		return err
	}
	m, err := e.next()
	if err != nil {
		return err
	}
	if m.GetResponseHeaders() == nil {
		return fmt.Errorf("envoytest: expected a response headers response, got %s", describe(m))
	}
	applyMutation(res.ResponseHeaders, m.GetResponseHeaders().GetResponse().GetHeaderMutation(), nil)
	if err := onHeaders(res.ResponseHeaders); err != nil {
		return err
	}

	// The body goes out from its own goroutine while this one relays the
	// answers: a processor may answer a chunk only once it has the next
	// (a pattern cut in two), and neither side may wait for the other.
	pumped := make(chan error, 1)
	go func() { pumped <- e.pump(resp.Body) }()
	stop := func(err error) error {
		e.cancel() // unblocks a send held by gRPC flow control
		if c, ok := resp.Body.(io.Closer); ok {
			_ = c.Close() // unblocks a read from the upstream
		}
		<-pumped
		return err
	}
	for {
		m, err := e.next()
		if err != nil {
			return stop(err)
		}
		sb := m.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sb == nil {
			return stop(fmt.Errorf("envoytest: expected a streamed response body chunk, got %s", describe(m)))
		}
		if len(sb.GetBody()) > 0 {
			if err := onChunk(sb.GetBody()); err != nil {
				return stop(err)
			}
		}
		if sb.GetEndOfStream() {
			return <-pumped
		}
	}
}

// pump sends body to the processor as it is read, then the end of stream.
func (e *Stream) pump(body io.Reader) error {
	buf := make([]byte, streamReadSize)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			// A copy: the transcript keeps the message.
			chunk := append([]byte(nil), buf[:n]...)
			if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: chunk}}}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true}}})
		}
		if err != nil {
			return fmt.Errorf("envoytest: reading the response body: %w", err)
		}
	}
}

// Close half-closes the stream, as Envoy does when the HTTP stream is done,
// and waits for the processor to end it; a message it still sends is an
// error.
func (e *Stream) Close() error {
	defer e.cancel()
	if err := e.stream.CloseSend(); err != nil {
		return fmt.Errorf("envoytest: close: %w", err)
	}
	r, ok := <-e.recv
	switch {
	case !ok, r.err != nil && errors.Is(r.err, io.EOF):
		return nil
	case r.err != nil:
		return fmt.Errorf("envoytest: stream ended: %w", r.err)
	}
	return fmt.Errorf("envoytest: unexpected message after the exchange: %s", describe(r.msg))
}

type recvd struct {
	msg *extprocv3.ProcessingResponse
	err error
}

func (e *Stream) readLoop() {
	defer close(e.recv)
	for {
		m, err := e.stream.Recv()
		select {
		case e.recv <- recvd{m, err}:
		case <-e.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (e *Stream) send(m *extprocv3.ProcessingRequest) error {
	if !e.sent {
		e.sent = true
		if !e.req.NoProtocolConfig {
			m.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: e.req.Mode, ResponseBodyMode: e.req.Mode}
		}
	}
	e.record(m)
	if err := e.stream.Send(m); err != nil {
		return fmt.Errorf("envoytest: send: %w", err)
	}
	return nil
}

// record appends m to the transcript.
func (e *Stream) record(m any) {
	e.logMu.Lock()
	e.res.log = append(e.res.log, m)
	e.logMu.Unlock()
}

// endedEarly handles a request-phase send that failed: when the processor
// had already ended the stream (gRPC reports io.EOF on send) because it
// answered before the whole request was sent — an ImmediateResponse such
// as a 413 while the body was still arriving — that answer is the result,
// as Envoy would play it, and endedEarly returns nil with
// Result().Immediate set. Any other failure is returned as it is.
func (e *Stream) endedEarly(sendErr error) error {
	if !errors.Is(sendErr, io.EOF) {
		return sendErr
	}
	for {
		_, err := e.next()
		if e.res.Immediate != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return sendErr
			}
			return fmt.Errorf("%w (the processor ended the stream: %w)", sendErr, err)
		}
	}
}

// next is the processor's next message; io.EOF if it ended the stream.
func (e *Stream) next() (*extprocv3.ProcessingResponse, error) {
	r, ok := <-e.recv
	if !ok {
		return nil, io.EOF
	}
	if r.err != nil {
		return nil, r.err
	}
	e.record(r.msg)
	if im := r.msg.GetImmediateResponse(); im != nil {
		e.res.Immediate = im
	}
	return r.msg, nil
}

func (e *Stream) requestPhase() error {
	req, res := e.req, e.res
	res.RequestHeaders = maps.Clone(lower(req.Headers))
	res.SetRequestHeaders = map[string]string{}
	if req.Body != nil {
		res.RequestHeaders["content-length"] = strconv.Itoa(len(req.Body))
	}
	headerOnly := req.Body == nil && len(req.Trailers) == 0
	if err := e.send(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: headerMap(req.Headers), EndOfStream: headerOnly,
		}},
		MetadataContext: req.Metadata,
	}); err != nil {
		return e.endedEarly(err)
	}
	if req.Mode == Buffered || headerOnly {
		// Envoy waits for the headers answer before it sends a buffered body.
		m, err := e.next()
		if err != nil || res.Immediate != nil {
			return err
		}
		if err := e.applyRequest(m, m.GetRequestHeaders().GetResponse()); err != nil {
			return err
		}
		if headerOnly {
			return nil
		}
	}
	if req.Mode == Buffered {
		if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: req.Body, EndOfStream: len(req.Trailers) == 0,
		}}}); err != nil {
			return err
		}
		m, err := e.next()
		if err != nil || res.Immediate != nil {
			return err
		}
		if m.GetRequestBody() == nil {
			return fmt.Errorf("envoytest: expected a request body response, got %s", describe(m))
		}
		res.Body = req.Body
		c := m.GetRequestBody().GetResponse()
		if b, ok := c.GetBodyMutation().GetMutation().(*extprocv3.BodyMutation_Body); ok {
			res.Body = b.Body
		}
		if err := e.applyRequest(m, c); err != nil {
			return err
		}
		return e.trailers()
	}

	// FULL_DUPLEX_STREAMED: the whole body goes out without waiting.
	chunks := req.chunks()
	for i, c := range chunks {
		if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: c, EndOfStream: i == len(chunks)-1 && len(req.Trailers) == 0,
		}}}); err != nil {
			return e.endedEarly(err)
		}
	}
	if len(req.Trailers) > 0 {
		if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{
			Trailers: headerMap(req.Trailers),
		}}}); err != nil {
			return e.endedEarly(err)
		}
	}
	m, err := e.next()
	if err != nil || res.Immediate != nil {
		return err
	}
	if m.GetRequestHeaders() == nil {
		return fmt.Errorf("envoytest: expected the request headers response first, got %s", describe(m))
	}
	if err := e.applyRequest(m, m.GetRequestHeaders().GetResponse()); err != nil {
		return err
	}
	res.Body = []byte{}
	for {
		m, err := e.next()
		if err != nil {
			return err
		}
		if res.Immediate != nil {
			return nil
		}
		if len(req.Trailers) > 0 && m.GetRequestTrailers() != nil {
			return nil
		}
		sb := m.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sb == nil {
			return fmt.Errorf("envoytest: expected a streamed request body chunk, got %s", describe(m))
		}
		res.Body = append(res.Body, sb.GetBody()...)
		res.BodyChunks = append(res.BodyChunks, sb.GetBody())
		if sb.GetEndOfStream() {
			if len(req.Trailers) > 0 {
				return fmt.Errorf("envoytest: end_of_stream on the body although trailers follow")
			}
			return nil
		}
	}
}

// chunks cuts the body as Envoy would send it in FULL_DUPLEX mode.
func (r *Request) chunks() [][]byte {
	body := r.Body
	var out [][]byte
	if len(r.Splits) > 0 {
		at := 0
		for _, s := range r.Splits {
			if s < at || s > len(body) {
				continue
			}
			out = append(out, body[at:s])
			at = s
		}
		return append(out, body[at:])
	}
	size := r.ChunkSize
	if size <= 0 {
		size = max(len(body), 1)
	}
	for first := true; first || len(body) > 0; first = false {
		n := min(size, len(body))
		out = append(out, body[:n])
		body = body[n:]
	}
	return out
}

func (e *Stream) trailers() error {
	if len(e.req.Trailers) == 0 {
		return nil
	}
	if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{
		Trailers: headerMap(e.req.Trailers),
	}}}); err != nil {
		return err
	}
	m, err := e.next()
	if err != nil || e.res.Immediate != nil {
		return err
	}
	if m.GetRequestTrailers() == nil {
		return fmt.Errorf("envoytest: expected a trailers response, got %s", describe(m))
	}
	return nil
}

// applyRequest applies a request-phase response's header mutation, route
// cache flag and metadata.
func (e *Stream) applyRequest(m *extprocv3.ProcessingResponse, c *extprocv3.CommonResponse) error {
	if m.GetRequestHeaders() == nil && m.GetRequestBody() == nil {
		return fmt.Errorf("envoytest: expected a request-phase response, got %s", describe(m))
	}
	applyMutation(e.res.RequestHeaders, c.GetHeaderMutation(), e.res.SetRequestHeaders)
	e.res.RemovedRequestHeaders = append(e.res.RemovedRequestHeaders, c.GetHeaderMutation().GetRemoveHeaders()...)
	e.res.ClearRouteCache = e.res.ClearRouteCache || c.GetClearRouteCache()
	if md := m.GetDynamicMetadata(); md != nil {
		e.res.Metadata = md
	}
	return nil
}

func (e *Stream) responsePhase(resp *Response) error {
	res := e.res
	res.ResponseHeaders = lower(resp.Headers)
	res.ResponseHeaders[":status"] = strconv.Itoa(resp.Status)
	headerOnly := len(resp.Chunks) == 0
	if err := e.send(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(res.ResponseHeaders), EndOfStream: headerOnly}},
		MetadataContext: resp.Metadata,
	}); err != nil {
		return err
	}
	m, err := e.next()
	if err != nil {
		return err
	}
	if m.GetResponseHeaders() == nil {
		return fmt.Errorf("envoytest: expected a response headers response, got %s", describe(m))
	}
	applyMutation(res.ResponseHeaders, m.GetResponseHeaders().GetResponse().GetHeaderMutation(), nil)
	if headerOnly {
		return nil
	}
	if e.req.Mode == Buffered {
		var all []byte
		for _, c := range resp.Chunks {
			all = append(all, c...)
		}
		if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: all, EndOfStream: true}}}); err != nil {
			return err
		}
		m, err := e.next()
		if err != nil {
			return err
		}
		if m.GetResponseBody() == nil {
			return fmt.Errorf("envoytest: expected a response body response, got %s", describe(m))
		}
		c := m.GetResponseBody().GetResponse()
		applyMutation(res.ResponseHeaders, c.GetHeaderMutation(), nil)
		res.ResponseBody = all
		if b, ok := c.GetBodyMutation().GetMutation().(*extprocv3.BodyMutation_Body); ok {
			res.ResponseBody = b.Body
		}
		return nil
	}
	res.ResponseBody = []byte{}
	for i, chunk := range resp.Chunks {
		last := i == len(resp.Chunks)-1
		if err := e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: last}}}); err != nil {
			return err
		}
		if resp.OnChunk == nil {
			continue // Envoy does not wait; the answers are read below
		}
		if !last {
			if _, err := e.readResponseChunk(); err != nil {
				return err
			}
		} else if err := e.readResponseChunks(); err != nil {
			return err
		}
		resp.OnChunk(i, res.ResponseBody)
	}
	if resp.OnChunk != nil {
		return nil
	}
	return e.readResponseChunks()
}

// readResponseChunks collects streamed response chunks up to the one with
// end_of_stream.
func (e *Stream) readResponseChunks() error {
	for {
		eos, err := e.readResponseChunk()
		if err != nil || eos {
			return err
		}
	}
}

// readResponseChunk reads one streamed response chunk.
func (e *Stream) readResponseChunk() (eos bool, err error) {
	m, err := e.next()
	if err != nil {
		return false, err
	}
	sb := m.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	if sb == nil {
		return false, fmt.Errorf("envoytest: expected a streamed response body chunk, got %s", describe(m))
	}
	e.res.ResponseBody = append(e.res.ResponseBody, sb.GetBody()...)
	return sb.GetEndOfStream(), nil
}

func applyMutation(h map[string]string, m *extprocv3.HeaderMutation, set map[string]string) {
	for _, o := range m.GetSetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		h[k] = headerValue(o.GetHeader())
		if set != nil {
			set[k] = h[k]
		}
	}
	for _, k := range m.GetRemoveHeaders() {
		delete(h, strings.ToLower(k))
	}
}

func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

func lower(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = v
	}
	return out
}

// headerMap renders headers as Envoy sends them: raw_value, sorted.
func headerMap(h map[string]string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(h[k])})
	}
	return hm
}

// SubsetHint is request metadata carrying the gateway's subset hint.
func SubsetHint(addrs ...string) *corev3.Metadata {
	vals := make([]any, len(addrs))
	for i, a := range addrs {
		vals[i] = a
	}
	l, _ := structpb.NewList(vals)
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb.subset_hint": {Fields: map[string]*structpb.Value{"x-gateway-destination-endpoint-subset": structpb.NewListValue(l)}},
	}}
}

// Served is response metadata naming the endpoint Envoy used.
func Served(addr string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb": {Fields: map[string]*structpb.Value{"x-gateway-destination-endpoint-served": structpb.NewStringValue(addr)}},
	}}
}

func describeRequest(m *extprocv3.ProcessingRequest) string {
	var b strings.Builder
	switch r := m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		fmt.Fprintf(&b, "request_headers%s %s", eosFlag(r.RequestHeaders.GetEndOfStream()), describeHeaders(r.RequestHeaders.GetHeaders()))
	case *extprocv3.ProcessingRequest_RequestBody:
		fmt.Fprintf(&b, "request_body %d bytes%s", len(r.RequestBody.GetBody()), eosFlag(r.RequestBody.GetEndOfStream()))
	case *extprocv3.ProcessingRequest_RequestTrailers:
		fmt.Fprintf(&b, "request_trailers %s", describeHeaders(r.RequestTrailers.GetTrailers()))
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		fmt.Fprintf(&b, "response_headers%s %s", eosFlag(r.ResponseHeaders.GetEndOfStream()), describeHeaders(r.ResponseHeaders.GetHeaders()))
	case *extprocv3.ProcessingRequest_ResponseBody:
		fmt.Fprintf(&b, "response_body %d bytes%s", len(r.ResponseBody.GetBody()), eosFlag(r.ResponseBody.GetEndOfStream()))
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		fmt.Fprintf(&b, "response_trailers %s", describeHeaders(r.ResponseTrailers.GetTrailers()))
	}
	if pc := m.GetProtocolConfig(); pc != nil {
		fmt.Fprintf(&b, " protocol_config{request=%s response=%s}", pc.GetRequestBodyMode(), pc.GetResponseBodyMode())
	}
	if md := m.GetMetadataContext(); md != nil {
		fmt.Fprintf(&b, " metadata{%s}", describeMetadata(md.GetFilterMetadata()))
	}
	return b.String()
}

func describe(m *extprocv3.ProcessingResponse) string {
	var b strings.Builder
	common := func(c *extprocv3.CommonResponse) {
		if c.GetStatus() != extprocv3.CommonResponse_CONTINUE {
			fmt.Fprintf(&b, " status=%s", c.GetStatus())
		}
		if hm := c.GetHeaderMutation(); hm != nil {
			fmt.Fprintf(&b, " %s", describeMutation(hm))
		}
		switch bm := c.GetBodyMutation().GetMutation().(type) {
		case *extprocv3.BodyMutation_Body:
			fmt.Fprintf(&b, " body=%d bytes", len(bm.Body))
		case *extprocv3.BodyMutation_StreamedResponse:
			fmt.Fprintf(&b, " streamed=%d bytes%s", len(bm.StreamedResponse.GetBody()), eosFlag(bm.StreamedResponse.GetEndOfStream()))
		}
		if c.GetClearRouteCache() {
			b.WriteString(" clear_route_cache")
		}
	}
	switch r := m.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		b.WriteString("request_headers")
		common(r.RequestHeaders.GetResponse())
	case *extprocv3.ProcessingResponse_RequestBody:
		b.WriteString("request_body")
		common(r.RequestBody.GetResponse())
	case *extprocv3.ProcessingResponse_RequestTrailers:
		b.WriteString("request_trailers")
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		b.WriteString("response_headers")
		common(r.ResponseHeaders.GetResponse())
	case *extprocv3.ProcessingResponse_ResponseBody:
		b.WriteString("response_body")
		common(r.ResponseBody.GetResponse())
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		b.WriteString("response_trailers")
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		im := r.ImmediateResponse
		fmt.Fprintf(&b, "immediate_response status=%d %s body=%s details=%s", im.GetStatus().GetCode(), describeMutation(im.GetHeaders()), im.GetBody(), im.GetDetails())
	default:
		b.WriteString("(empty)")
	}
	if md := m.GetDynamicMetadata(); md != nil {
		fmt.Fprintf(&b, " dynamic_metadata{%s}", describeStruct(md))
	}
	return b.String()
}

func eosFlag(eos bool) string {
	if eos {
		return " end_of_stream"
	}
	return ""
}

func describeHeaders(hm *corev3.HeaderMap) string {
	parts := make([]string, 0, len(hm.GetHeaders()))
	for _, h := range hm.GetHeaders() {
		parts = append(parts, h.GetKey()+"="+headerValue(h))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func describeMutation(hm *extprocv3.HeaderMutation) string {
	var parts []string
	for _, o := range hm.GetSetHeaders() {
		parts = append(parts, "set:"+o.GetHeader().GetKey()+"="+headerValue(o.GetHeader()))
	}
	sort.Strings(parts)
	for _, k := range hm.GetRemoveHeaders() {
		parts = append(parts, "remove:"+k)
	}
	return "headers[" + strings.Join(parts, " ") + "]"
}

func describeMetadata(fm map[string]*structpb.Struct) string {
	var parts []string
	for _, ns := range slices.Sorted(maps.Keys(fm)) {
		parts = append(parts, ns+":"+describeStruct(fm[ns]))
	}
	return strings.Join(parts, " ")
}

func describeStruct(s *structpb.Struct) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.GetFields())) {
		parts = append(parts, k+"="+describeValue(s.GetFields()[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func describeValue(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		return describeStruct(k.StructValue)
	case *structpb.Value_ListValue:
		parts := make([]string, 0, len(k.ListValue.GetValues()))
		for _, e := range k.ListValue.GetValues() {
			parts = append(parts, describeValue(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *structpb.Value_StringValue:
		return strconv.Quote(k.StringValue)
	default:
		return fmt.Sprint(v.AsInterface())
	}
}
