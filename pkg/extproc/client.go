package extproc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// DefaultClientTimeout bounds a picker's request phase when the caller does
// not: long enough for a 10 MiB body on loopback or in a cluster, short
// enough that FailOpen does not add seconds to a request when the picker
// hangs.
const DefaultClientTimeout = 500 * time.Millisecond

// mirrorQueue is how many response messages may wait for the picker. The
// client's response is never held back for the picker; a picker that falls
// this far behind loses the rest of the response phase (it then ends the
// attempt as if the stream broke), which costs accounting, never serving.
const mirrorQueue = 256

// mirrorDrainTimeout bounds how long a finished response phase waits for
// the picker to end the stream.
const mirrorDrainTimeout = 10 * time.Second

// Client is the Envoy side of the Endpoint Picker protocol, for `igw serve`
// with a remote picker: it plays each request through a picker's Process
// stream in FULL_DUPLEX_STREAMED mode, as Envoy's ext_proc filter does, so
// any conforming picker (igw epp or another) can schedule igw's pools.
type Client struct {
	conn    grpc.ClientConnInterface
	timeout time.Duration
}

// NewClient is a client over conn. timeout bounds the request phase (from
// opening the stream to the last body chunk of the answer); 0 means
// DefaultClientTimeout.
func NewClient(conn grpc.ClientConnInterface, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultClientTimeout
	}
	return &Client{conn: conn, timeout: timeout}
}

// PickRequest is one HTTP request as the picker should see it.
type PickRequest struct {
	// Headers, lower-case names, including the pseudo-headers :method,
	// :path and :authority.
	Headers map[string]string
	// Body; nil sends a header-only request.
	Body []byte
	// Subset, when not nil, is sent as the subset hint (an empty, non-nil
	// slice means no candidates).
	Subset []string
}

// Immediate is the picker's refusal, to be answered to the client as is.
type Immediate struct {
	Status  int
	Headers map[string]string
	Body    []byte
}

// Exchange is one request through the picker. After Pick, either Immediate
// is set or Endpoints holds the decision; then the response phase goes
// through ResponseHeaders, ResponseBody and Close.
type Exchange struct {
	// Immediate is the picker's refusal, or nil.
	Immediate *Immediate
	// Endpoints is the decision: the primary endpoint first, then the
	// fallbacks for retries.
	Endpoints []string
	// SetHeaders and RemoveHeaders are the picker's mutations of the
	// request headers (lower-case names; the destination header included).
	SetHeaders    map[string]string
	RemoveHeaders []string
	// Body is the request body to forward (rewritten by the picker when it
	// changed the model).
	Body []byte

	stream extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc

	mu      sync.Mutex
	out     chan *extprocv3.ProcessingRequest
	started bool
	closed  bool
	done    chan struct{}
}

// Pick runs the request phase: request headers and body chunks under
// MaxChunkBytes, then the picker's HeadersResponse and the body it sends
// back, or an ImmediateResponse. An error (picker unreachable, protocol
// violation, timeout) leaves nothing to close.
func (c *Client) Pick(ctx context.Context, req *PickRequest) (*Exchange, error) {
	// The stream outlives the request phase and even the HTTP handler: the
	// mirrored response may still be on its way to the picker when the
	// client has everything, and cutting it then would lose the usage.
	// So ctx (the client leaving, the route's timeout) cancels only the
	// request phase; afterwards Close, or the mirror finishing, ends it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	timer := time.AfterFunc(c.timeout, cancel)
	x := &Exchange{cancel: cancel}
	err := x.requestPhase(sctx, c.conn, req)
	stop()
	if !timer.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		if ctx.Err() == nil && sctx.Err() != nil {
			err = fmt.Errorf("extproc: picker did not answer within %s: %w", c.timeout, err)
		}
		return nil, err
	}
	if x.Immediate != nil {
		cancel()
	}
	return x, nil
}

func (x *Exchange) requestPhase(ctx context.Context, conn grpc.ClientConnInterface, req *PickRequest) error {
	s, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		return fmt.Errorf("extproc: open picker stream: %w", err)
	}
	x.stream = s
	headerOnly := req.Body == nil
	first := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: clientHeaderMap(req.Headers, len(req.Body), headerOnly), EndOfStream: headerOnly,
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: BodyModeFullDuplexStream, ResponseBodyMode: BodyModeFullDuplexStream},
	}
	if req.Subset != nil {
		first.MetadataContext = subsetMetadata(req.Subset)
	}
	if err := s.Send(first); err != nil {
		return fmt.Errorf("extproc: send request headers: %w", err)
	}
	// The picker answers nothing before it has the whole body, so sending
	// it all before reading cannot deadlock on flow control.
	for body, first := req.Body, true; !headerOnly && (first || len(body) > 0); first = false {
		n := min(len(body), MaxChunkBytes)
		if err := s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: body[:n], EndOfStream: n == len(body),
		}}}); err != nil {
			return fmt.Errorf("extproc: send request body: %w", err)
		}
		body = body[n:]
	}
	m, err := s.Recv()
	if err != nil {
		return fmt.Errorf("extproc: receive decision: %w", err)
	}
	if im := m.GetImmediateResponse(); im != nil {
		x.Immediate = immediate(im)
		return nil
	}
	hr := m.GetRequestHeaders()
	if hr == nil {
		return fmt.Errorf("extproc: picker answered %T before the request headers", m.GetResponse())
	}
	x.SetHeaders = map[string]string{}
	x.applyRequest(hr.GetResponse())
	dest := x.SetHeaders[HeaderDestinationEndpoint]
	if dest == "" {
		dest = m.GetDynamicMetadata().GetFields()[MetadataNamespaceLB].GetStructValue().GetFields()[HeaderDestinationEndpoint].GetStringValue()
	}
	for _, a := range strings.Split(dest, ",") {
		if a = strings.TrimSpace(a); a != "" {
			x.Endpoints = append(x.Endpoints, a)
		}
	}
	if len(x.Endpoints) == 0 {
		return errors.New("extproc: the picker chose no endpoint")
	}
	if headerOnly {
		return nil
	}
	x.Body = req.Body
	var body []byte
	for {
		m, err := s.Recv()
		if err != nil {
			return fmt.Errorf("extproc: receive request body: %w", err)
		}
		if im := m.GetImmediateResponse(); im != nil {
			x.Immediate, x.Endpoints = immediate(im), nil
			return nil
		}
		c := m.GetRequestBody().GetResponse()
		if c == nil {
			return fmt.Errorf("extproc: expected a request body chunk from the picker, got %T", m.GetResponse())
		}
		x.applyRequest(c)
		switch bm := c.GetBodyMutation().GetMutation().(type) {
		case *extprocv3.BodyMutation_StreamedResponse:
			body = append(body, bm.StreamedResponse.GetBody()...)
			if bm.StreamedResponse.GetEndOfStream() {
				x.Body = body
				return nil
			}
		case *extprocv3.BodyMutation_Body:
			x.Body = bm.Body
			return nil
		default:
			// CONTINUE without a mutation: the body passes unchanged.
			return nil
		}
	}
}

func (x *Exchange) applyRequest(c *extprocv3.CommonResponse) {
	hm := c.GetHeaderMutation()
	for _, o := range hm.GetSetHeaders() {
		x.SetHeaders[strings.ToLower(o.GetHeader().GetKey())] = headerValue(o.GetHeader())
	}
	x.RemoveHeaders = append(x.RemoveHeaders, hm.GetRemoveHeaders()...)
}

// ResponseHeaders starts the response phase: the model server's status and
// headers, and the endpoint that served the request (reported as Envoy
// does, in envoy.lb / x-gateway-destination-endpoint-served). eos means no
// body follows. It never blocks: the messages go to the picker in the
// background while the caller streams the response to its client.
func (x *Exchange) ResponseHeaders(status int, headers map[string]string, served string, eos bool) {
	if x == nil || x.Immediate != nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.started || x.closed {
		return
	}
	x.started = true
	x.out = make(chan *extprocv3.ProcessingRequest, mirrorQueue)
	x.done = make(chan struct{})
	go x.mirror()
	h := make(map[string]string, len(headers)+1)
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	h[":status"] = strconv.Itoa(status)
	x.enqueue(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: clientHeaderMap(h, -1, true), EndOfStream: eos}},
		MetadataContext: servedMetadata(served),
	})
	if eos {
		x.finish()
	}
}

// ResponseBody mirrors one response chunk (copied: the caller may reuse
// it) to the picker; eos marks the last one.
func (x *Exchange) ResponseBody(chunk []byte, eos bool) {
	if x == nil || x.Immediate != nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.started || x.closed {
		return
	}
	x.enqueue(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
		Body: append([]byte(nil), chunk...), EndOfStream: eos,
	}}})
	if eos {
		x.finish()
	}
}

// Close ends the exchange. After a complete response the picker gets to
// read it to the end; otherwise the stream is cancelled, which the picker
// takes as a request that ended early. Close never waits for the picker.
func (x *Exchange) Close() {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.started {
		x.closed = true
		x.cancel()
		return
	}
	if !x.closed {
		x.closed = true
		close(x.out)
		x.cancel() // incomplete response: the picker sees the stream end
	}
}

// Done is closed when the response phase is over; nil (which blocks
// forever) before ResponseHeaders. For tests and for callers that want to
// wait for the picker's accounting.
func (x *Exchange) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.done
}

// enqueue hands a message to the mirror goroutine, or gives up the
// response phase when the picker fell too far behind (x.mu held).
func (x *Exchange) enqueue(m *extprocv3.ProcessingRequest) {
	select {
	case x.out <- m:
	default:
		x.closed = true
		close(x.out)
		x.cancel()
	}
}

// finish ends a complete response phase (x.mu held): the queue is closed,
// and the mirror half-closes the stream once it has sent everything.
func (x *Exchange) finish() {
	x.closed = true
	close(x.out)
}

// mirror sends the queued response messages and reads (and drops) the
// picker's answers: the client already got the response; the picker only
// needs to see it to account usage and release the endpoint's in-flight
// count.
func (x *Exchange) mirror() {
	defer close(x.done)
	defer x.cancel()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			if _, err := x.stream.Recv(); err != nil {
				return
			}
		}
	}()
	for m := range x.out {
		if err := x.stream.Send(m); err != nil {
			for range x.out { // the picker is gone: drain, keep serving
			}
			return
		}
	}
	if err := x.stream.CloseSend(); err != nil {
		return
	}
	// A conforming picker ends the stream once it has read the end; one
	// that does not is cut off rather than holding the goroutine.
	select {
	case <-recvDone:
	case <-time.After(mirrorDrainTimeout):
	}
}

func immediate(im *extprocv3.ImmediateResponse) *Immediate {
	out := &Immediate{Status: int(im.GetStatus().GetCode()), Headers: map[string]string{}, Body: im.GetBody()}
	if out.Status == 0 {
		out.Status = 200 // Envoy's default for an ImmediateResponse without status
	}
	for _, o := range im.GetHeaders().GetSetHeaders() {
		out.Headers[strings.ToLower(o.GetHeader().GetKey())] = headerValue(o.GetHeader())
	}
	return out
}

// clientHeaderMap renders headers as Envoy sends them (raw_value), with
// content-length set to the body's length (n < 0: left as given).
func clientHeaderMap(h map[string]string, n int, headerOnly bool) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h)+1)}
	for k, v := range h {
		if k == "content-length" && n >= 0 {
			continue
		}
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	if n >= 0 && !headerOnly {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(n))})
	}
	return hm
}

func subsetMetadata(addrs []string) *corev3.Metadata {
	vals := make([]*structpb.Value, len(addrs))
	for i, a := range addrs {
		vals[i] = structpb.NewStringValue(a)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		MetadataNamespaceSubsetHint: {Fields: map[string]*structpb.Value{HeaderDestinationSubset: structpb.NewListValue(&structpb.ListValue{Values: vals})}},
	}}
}

func servedMetadata(addr string) *corev3.Metadata {
	if addr == "" {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		MetadataNamespaceLB: {Fields: map[string]*structpb.Value{HeaderDestinationServed: structpb.NewStringValue(addr)}},
	}}
}
