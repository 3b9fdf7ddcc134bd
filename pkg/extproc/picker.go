package extproc

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/igw-dev/igw/internal/bufpool"
	"github.com/igw-dev/igw/pkg/director"
)

// PickerOptions configures a Picker; zero values get defaults.
type PickerOptions struct {
	// Director decides every request. Required.
	Director *director.Director
	// Pool is the namespaced name ("namespace/name") of the InferencePool
	// this picker serves. Required.
	Pool string
	// Logger receives stream failures (default: discard).
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int
	// DefaultBodyMode is assumed when Envoy does not announce its body
	// modes in protocol_config (default FULL_DUPLEX_STREAMED, what current
	// Endpoint Picker deployments configure).
	DefaultBodyMode BodyMode
}

// Picker is igw's Endpoint Picker: an Envoy ext_proc server that hands
// each request to the Director and answers with the decision in the
// x-gateway-destination-endpoint header and envoy.lb metadata
// (REFERENCE §2). It is only a wire adapter: parsing, policies, routing,
// rewrites, shedding, response observation and metrics are the Director's.
type Picker struct {
	extprocv3.UnimplementedExternalProcessorServer

	director *director.Director
	pool     string
	log      *slog.Logger
	cfg      streamConfig
	bodies   bufpool.Pool
}

var _ extprocv3.ExternalProcessorServer = (*Picker)(nil)

// pickerOwnedHeaders are routing headers only the picker (or Envoy) sets;
// a client's copies are removed so no client can choose the endpoint.
func pickerOwnedHeaders() []string {
	return []string{HeaderDestinationEndpoint, HeaderDestinationServed, HeaderDestinationSubset, HeaderDroppedReason}
}

// NewPicker builds a Picker over a Director.
func NewPicker(o PickerOptions) (*Picker, error) {
	if o.Director == nil || o.Pool == "" {
		return nil, errors.New("extproc: a picker needs a Director and a pool")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.DefaultBodyMode == BodyModeNone {
		o.DefaultBodyMode = BodyModeFullDuplexStream
	}
	p := &Picker{
		director: o.Director, pool: o.Pool, log: o.Logger,
		cfg: streamConfig{strip: pickerOwnedHeaders(), maxBody: o.MaxBodyBytes, defaultMode: o.DefaultBodyMode},
	}
	p.cfg.bodies = &p.bodies
	return p, nil
}

// Process serves one ext_proc stream, which Envoy opens for each HTTP
// request.
func (p *Picker) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	err := serveStream(srv, &pick{p: p}, &p.cfg)
	if err != nil {
		p.log.Debug("ext_proc stream failed", "err", err)
	}
	return err
}

// errStreamEnded finishes an exchange whose response never completed.
var errStreamEnded = errors.New("extproc: the ext_proc stream ended before the response did")

// pick is one request through the picker: the wire mapping of one
// director.Exchange.
type pick struct {
	p *Picker
	x *director.Exchange
}

func (k *pick) request(ctx context.Context, r *httpRequest) (*verdict, *rejection) {
	in := &director.Inbound{
		Method: r.method, Path: r.path, Header: director.HeaderFromLower(r.headers),
		Body: r.body, Subset: subsetHint(r.metadata), Pool: k.p.pool,
	}
	x, reply := k.p.director.Begin(ctx, in)
	if reply != nil {
		return nil, replyRejection(reply)
	}
	k.x = x
	eps := x.Endpoints()
	dest := strings.Join(eps, ",")
	v := &verdict{metadata: lbMetadata(dest)}
	v.edits.setHeader(HeaderDestinationEndpoint, dest)
	if len(eps) > 0 {
		// Before the header edits are read: a traced request's attempt
		// sets the traceparent the model server gets.
		x.Try(ctx, eps[0])
	}
	set, remove := x.HeaderEdits()
	h := x.Header()
	for _, name := range set {
		if vals := h.Values(name); len(vals) > 0 {
			v.edits.setHeader(strings.ToLower(name), vals[0])
		}
	}
	for _, name := range remove {
		if h.Get(name) == "" {
			v.edits.remove = append(v.edits.remove, strings.ToLower(name))
		}
	}
	if !r.headerOnly && !sameBytes(x.Body, r.body) {
		v.body, v.bodyChanged = x.Body, true
	}
	return v, nil
}

// sameBytes reports whether a and b are the same slice (not merely equal
// bytes): the Director returns the request's own body when it changed
// nothing.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// replyRejection renders a Director's reply as an ImmediateResponse.
func replyRejection(r *director.Reply) *rejection {
	rej := &rejection{status: r.Status, body: r.Body, details: r.Reason}
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		vs := r.Header[k]
		if strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Content-Type") || len(vs) == 0 {
			continue // Envoy sets the length; the rejection sets the type
		}
		rej.headers = append(rej.headers, header{strings.ToLower(k), vs[0]})
	}
	if rej.details == "" { // Envoy logs it as response code details: one token
		rej.details = "igw_" + strconv.Itoa(r.Status)
		if e := r.Error(); e != nil {
			rej.details = "igw_" + e.Type
		}
	}
	return rej
}

func (k *pick) responseHeaders(ctx context.Context, r *httpResponse) (bool, []header) {
	if k.x == nil {
		return false, nil
	}
	if served := servedEndpoint(r.metadata); served != "" {
		// Envoy failed over to a fallback: the request is in flight there.
		k.x.Try(ctx, served)
	}
	rewrites := k.x.ResponseHeaders(r.status, r.headers["content-type"])
	var set []header
	for name, vs := range k.x.ResponseHeader {
		if len(vs) > 0 {
			set = append(set, header{strings.ToLower(name), vs[0]})
		}
	}
	if r.endOfStream {
		k.x.Finish(ctx, nil)
	}
	return rewrites, set
}

func (k *pick) responseBody(ctx context.Context, chunk []byte, final, eos bool) []byte {
	if k.x == nil {
		return chunk
	}
	out := k.x.ResponseBody(chunk, final)
	if eos {
		k.x.Finish(ctx, nil)
	}
	return out
}

func (k *pick) end(ctx context.Context) {
	if k.x != nil {
		// Envoy closed the stream (client gone, upstream reset, another
		// filter answered): the request is no longer in flight. A no-op
		// when the response completed.
		k.x.Finish(context.WithoutCancel(ctx), errStreamEnded)
	}
}
