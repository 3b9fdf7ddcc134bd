package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/igw-dev/igw/internal/bufpool"
	"github.com/igw-dev/igw/pkg/openai"
)

// exchange is what one processor (the picker, the body-based router) does
// with one HTTP request; the stream driver below speaks the protocol around
// it, so body modes, chunking and message order are handled once.
type exchange interface {
	// request decides on the complete request (headers and whole body). It
	// returns either a verdict or a rejection.
	request(ctx context.Context, r *httpRequest) (*verdict, *rejection)
	// responseHeaders sees the response headers and says whether the
	// response body will be rewritten (so its length may change) and which
	// response headers to set.
	responseHeaders(ctx context.Context, r *httpResponse) (rewritesBody bool, set []header)
	// responseBody observes one response body chunk and returns the bytes
	// to forward in its place. Unless final, it may hold back a few bytes
	// for the next call (a pattern cut by the chunk boundary); final means
	// nothing may be held. eos marks the end of the body.
	responseBody(ctx context.Context, chunk []byte, final, eos bool) []byte
	// end is called exactly once, when the stream ends for any reason.
	end(ctx context.Context)
}

// httpRequest is the request as the driver assembled it.
type httpRequest struct {
	headers      map[string]string // lower-case names, first value
	method, path string            // path without its query
	body         []byte
	headerOnly   bool // the request has no body at all
	metadata     *corev3.Metadata
}

// verdict is how a request continues upstream.
type verdict struct {
	edits headerEdits
	// body is forwarded in place of the request body when bodyChanged; the
	// driver then sets Content-Length.
	body        []byte
	bodyChanged bool
	metadata    *structpb.Struct
}

// httpResponse is the response headers message.
type httpResponse struct {
	headers     map[string]string
	status      int
	metadata    *corev3.Metadata
	endOfStream bool
}

// streamConfig are the protocol settings of a processor.
type streamConfig struct {
	// strip are request headers only the processor may set: they are
	// removed from what the client sent before anything else happens.
	strip []string
	// maxBody bounds the buffered request body (413 beyond).
	maxBody int
	// defaultMode is assumed for both directions when Envoy does not
	// announce its modes (protocol_config, sent by recent Envoys).
	defaultMode BodyMode
	// bodies recycles the buffers bodies of several messages are
	// assembled in (nil: allocate).
	bodies *bufpool.Pool
}

// initialBodyBytes bounds what a declared Content-Length alone allocates
// before the bytes arrive; the buffer grows with the bytes received.
const initialBodyBytes = 256 << 10

// driver runs one ext_proc stream: one HTTP request and its response.
type driver struct {
	srv extprocv3.ExternalProcessor_ProcessServer
	ex  exchange
	cfg *streamConfig

	reqMode, respMode BodyMode
	first             bool

	req         httpRequest
	pooled      []byte // the buffer req.body was assembled in, from cfg.bodies
	bodyLength  int    // the request's Content-Length, when it announced one
	bodyStarted bool
	requestDone bool
	respRewrite bool
	respDone    bool
}

// errRejected ends a stream after an ImmediateResponse.
var errRejected = errors.New("request rejected")

// serveStream runs the stream until Envoy closes it or the request is
// rejected. A stream Envoy cancels is not an error.
func serveStream(srv extprocv3.ExternalProcessor_ProcessServer, ex exchange, cfg *streamConfig) error {
	d := &driver{srv: srv, ex: ex, cfg: cfg, reqMode: cfg.defaultMode, respMode: cfg.defaultMode, first: true}
	ctx := srv.Context()
	defer ex.end(ctx)
	defer d.releaseBody()
	for {
		msg, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("extproc: receive: %w", err)
		}
		if err := d.handle(ctx, msg); err != nil {
			if errors.Is(err, errRejected) {
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (d *driver) send(r *extprocv3.ProcessingResponse) error {
	if err := d.srv.Send(r); err != nil {
		return fmt.Errorf("extproc: send: %w", err)
	}
	return nil
}

func (d *driver) reject(r *rejection) error {
	if err := d.send(r.response()); err != nil {
		return err
	}
	return errRejected
}

func (d *driver) handle(ctx context.Context, msg *extprocv3.ProcessingRequest) error {
	if d.first {
		d.first = false
		if pc := msg.GetProtocolConfig(); pc != nil {
			d.reqMode, d.respMode = pc.GetRequestBodyMode(), pc.GetResponseBodyMode()
		}
	}
	switch m := msg.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return d.requestHeaders(ctx, m.RequestHeaders, msg.GetMetadataContext())
	case *extprocv3.ProcessingRequest_RequestBody:
		return d.requestBody(ctx, m.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if !d.requestDone {
			// The trailers mark the end of a body that did not carry
			// end_of_stream; answer the body first, then the trailers.
			if err := d.complete(ctx, false); err != nil {
				return err
			}
		}
		return d.send(trailersResponse(true))
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return d.responseHeaders(ctx, m.ResponseHeaders, msg.GetMetadataContext())
	case *extprocv3.ProcessingRequest_ResponseBody:
		return d.responseBody(ctx, m.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if !d.respDone {
			// The trailers end the body: flush what the rewrite held back.
			d.respDone = true
			out := d.ex.responseBody(ctx, nil, true, true)
			if len(out) > 0 && d.respMode == BodyModeFullDuplexStream {
				if err := d.sendChunks(false, out, false); err != nil {
					return err
				}
			}
		}
		return d.send(trailersResponse(false))
	}
	return nil // flow-control-only messages need no answer
}

func (d *driver) requestHeaders(ctx context.Context, h *extprocv3.HttpHeaders, md *corev3.Metadata) error {
	d.req.headers = headerMap(h.GetHeaders())
	d.req.method = d.req.headers[":method"]
	d.req.path, _, _ = strings.Cut(d.req.headers[":path"], "?")
	d.req.metadata = md
	for _, k := range d.cfg.strip { // never let a client-sent value reach a plugin
		delete(d.req.headers, k)
	}
	if h.GetEndOfStream() || d.reqMode == BodyModeNone {
		d.req.headerOnly = h.GetEndOfStream()
		return d.complete(ctx, true)
	}
	switch d.reqMode {
	case BodyModeFullDuplexStream:
		// Nothing is answered until the whole body is here: the decision
		// goes in the headers response.
		if n, err := strconv.Atoi(d.req.headers["content-length"]); err == nil && n > 0 && n <= d.cfg.maxBody {
			d.bodyLength = n
		}
		return nil
	case BodyModeBuffered, BodyModeBufferedPartial:
		// Envoy waits for this answer before it sends the buffered body;
		// the decision goes in the body response.
		edits := headerEdits{remove: d.cfg.strip}
		return d.send(headersResponse(true, &extprocv3.CommonResponse{HeaderMutation: edits.mutation()}, nil))
	default:
		return d.reject(internalRejection(fmt.Sprintf("request body mode %s is not supported: configure FULL_DUPLEX_STREAMED or BUFFERED", d.reqMode)))
	}
}

func (d *driver) requestBody(ctx context.Context, b *extprocv3.HttpBody) error {
	if d.requestDone {
		return nil // a late chunk after a rejection or decision: nothing to do
	}
	chunk := b.GetBody()
	if len(d.req.body)+len(chunk) > d.cfg.maxBody {
		e := openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("the request body is over the limit of %d bytes", d.cfg.maxBody))
		return d.reject(errorRejection(e, ""))
	}
	// In BUFFERED mode the one body message is the whole body (trailers,
	// if any, follow it without changing it).
	last := b.GetEndOfStream() || d.reqMode != BodyModeFullDuplexStream
	switch {
	case len(d.req.body) == 0 && last:
		// The whole body in one message, as most are: kept as it is
		// (protobuf decoding gave it its own memory), never copied.
		d.req.body = chunk
	default:
		d.appendBody(chunk)
	}
	d.bodyStarted = true
	if last {
		return d.complete(ctx, last)
	}
	return nil
}

// appendBody assembles a body sent in several messages in one pooled
// buffer: sized from the Content-Length (up to initialBodyBytes before the
// bytes arrive), grown by doubling with the bytes received.
func (d *driver) appendBody(chunk []byte) {
	need := len(d.req.body) + len(chunk)
	if need > cap(d.req.body) {
		size := max(need, 2*cap(d.req.body))
		if d.req.body == nil {
			size = max(need, min(d.bodyLength, initialBodyBytes))
		}
		var next []byte
		if d.cfg.bodies != nil {
			next = d.cfg.bodies.Get(size)
		} else {
			next = make([]byte, 0, size)
		}
		next = append(next, d.req.body...)
		d.releaseBody()
		d.req.body, d.pooled = next, next
	}
	d.req.body = append(d.req.body, chunk...)
}

// releaseBody returns the assembly buffer once nothing reads it: after the
// decision was sent (gRPC has serialized the body it echoes) or when the
// stream ends.
func (d *driver) releaseBody() {
	if d.pooled != nil && d.cfg.bodies != nil {
		d.cfg.bodies.Put(d.pooled)
	}
	d.pooled = nil
}

// complete decides on the whole request and answers Envoy in the shape the
// body mode requires. eos is false when trailers follow the body.
func (d *driver) complete(ctx context.Context, eos bool) error {
	d.requestDone = true
	v, rej := d.ex.request(ctx, &d.req)
	if rej != nil {
		return d.reject(rej)
	}
	body := d.req.body
	if v.bodyChanged {
		body = v.body
		if !d.req.headerOnly {
			v.edits.setHeader("content-length", itoa(len(body)))
		}
	}
	v.edits.remove = append(v.edits.remove, d.cfg.strip...)
	v.edits.remove = dropSet(v.edits.remove, v.edits.set)
	common := &extprocv3.CommonResponse{HeaderMutation: v.edits.mutation(), ClearRouteCache: true}

	defer func() { d.req.body = nil; d.releaseBody() }()
	switch {
	case d.reqMode == BodyModeFullDuplexStream || d.req.headerOnly || d.reqMode == BodyModeNone:
		if err := d.send(headersResponse(true, common, v.metadata)); err != nil {
			return err
		}
		if d.req.headerOnly || d.reqMode == BodyModeNone {
			return nil
		}
		return d.sendChunks(true, body, eos)
	default: // BUFFERED: the body message is answered with the decision
		if v.bodyChanged {
			common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		}
		return d.send(bodyResponse(true, common, v.metadata))
	}
}

// dropSet removes from remove the names that set overwrites anyway (Envoy
// applies removals after sets, which would undo them).
func dropSet(remove []string, set []header) []string {
	out := remove[:0:0]
	for _, r := range remove {
		keep := true
		for _, h := range set {
			if strings.EqualFold(h.key, r) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, r)
		}
	}
	return out
}

// sendChunks streams body back in FULL_DUPLEX_STREAMED chunks under
// MaxChunkBytes, the last one carrying eos. An empty body with eos still
// needs its end-of-stream message.
func (d *driver) sendChunks(request bool, body []byte, eos bool) error {
	for {
		n := min(len(body), MaxChunkBytes)
		last := n == len(body)
		if err := d.send(streamedBody(request, body[:n], eos && last)); err != nil {
			return err
		}
		if last {
			return nil
		}
		body = body[n:]
	}
}

func (d *driver) responseHeaders(ctx context.Context, h *extprocv3.HttpHeaders, md *corev3.Metadata) error {
	hs := headerMap(h.GetHeaders())
	st, _ := strconv.Atoi(hs[":status"])
	var edits headerEdits
	d.respRewrite, edits.set = d.ex.responseHeaders(ctx, &httpResponse{headers: hs, status: st, metadata: md, endOfStream: h.GetEndOfStream()})
	if h.GetEndOfStream() {
		d.respDone = true
	}
	if d.respRewrite && d.respMode != BodyModeBuffered && d.respMode != BodyModeBufferedPartial {
		// The length changes and is not known before the body has passed.
		edits.remove = append(edits.remove, "content-length")
	}
	return d.send(headersResponse(false, &extprocv3.CommonResponse{HeaderMutation: edits.mutation()}, nil))
}

func (d *driver) responseBody(ctx context.Context, b *extprocv3.HttpBody) error {
	chunk, eos := b.GetBody(), b.GetEndOfStream()
	switch d.respMode {
	case BodyModeFullDuplexStream:
		out := d.ex.responseBody(ctx, chunk, eos, eos)
		d.respDone = d.respDone || eos
		if len(out) == 0 && !eos {
			return nil // all held back until the next chunk
		}
		return d.sendChunks(false, out, eos)
	default:
		// One answer per body message; with BUFFERED that message is the
		// whole body, so nothing may be held back.
		out := d.ex.responseBody(ctx, chunk, true, eos || d.respMode != BodyModeStreamed)
		d.respDone = d.respDone || eos
		common := &extprocv3.CommonResponse{}
		if d.respRewrite {
			common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}
			if d.respMode == BodyModeBuffered || d.respMode == BodyModeBufferedPartial {
				edits := headerEdits{}
				edits.setHeader("content-length", itoa(len(out)))
				common.HeaderMutation = edits.mutation()
			}
		}
		return d.send(bodyResponse(false, common, nil))
	}
}

// errorRejection renders an OpenAI-style error as an ImmediateResponse.
func errorRejection(e *openai.Error, reason string, extra ...header) *rejection {
	r := &rejection{status: e.Status(), body: e.JSON(), details: reason, headers: extra}
	if reason != "" {
		r.headers = append(r.headers, header{HeaderDroppedReason, reason})
	}
	if r.details == "" { // Envoy logs it as response code details: one token
		r.details = "igw_" + e.Type
	}
	return r
}

func internalRejection(msg string) *rejection {
	return errorRejection(openai.NewError(http.StatusInternalServerError, openai.ErrTypeServer, msg), "")
}
