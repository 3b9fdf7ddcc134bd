package extproc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// PickerOptions configures a Picker; zero values get defaults.
type PickerOptions struct {
	// Director decides every request. Required.
	Director *director.Director
	// Pool is the namespaced name ("namespace/name") of the InferencePool
	// this picker serves. Required.
	Pool string
	// Metrics, if set, records requests and token usage (the Director's
	// own observer records decisions and rejections).
	Metrics *telemetry.Metrics
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
// (REFERENCE §2). It is only a transport adapter: routing, rewrites,
// shedding and in-flight accounting are the Director's.
type Picker struct {
	extprocv3.UnimplementedExternalProcessorServer

	director *director.Director
	pool     string
	metrics  *telemetry.Metrics
	log      *slog.Logger
	cfg      streamConfig
	ids      atomic.Uint64
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
	return &Picker{
		director: o.Director, pool: o.Pool, metrics: o.Metrics, log: o.Logger,
		cfg: streamConfig{strip: pickerOwnedHeaders(), maxBody: o.MaxBodyBytes, defaultMode: o.DefaultBodyMode},
	}, nil
}

// Process serves one ext_proc stream, which Envoy opens for each HTTP
// request.
func (p *Picker) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	err := serveStream(srv, &pick{p: p, start: time.Now()}, &p.cfg)
	if err != nil {
		p.log.Debug("ext_proc stream failed", "err", err)
	}
	return err
}

// errNotServed finishes the attempt on an endpoint Envoy did not use in the
// end (it failed over to a fallback).
var errNotServed = errors.New("extproc: envoy served the request from another endpoint")

// errStreamEnded finishes an attempt whose response never completed.
var errStreamEnded = errors.New("extproc: the ext_proc stream ended before the response did")

// pick is one request through the picker.
type pick struct {
	p     *Picker
	start time.Time

	dec     *director.Decision
	att     *director.Attempt
	model   string
	status  int
	ttft    time.Duration
	obs     *openai.UsageObserver
	rewrite *modelRewriter
	done    bool
}

func (k *pick) request(ctx context.Context, r *httpRequest) (*verdict, *rejection) {
	var parsed *openai.Parsed
	kind := openai.KindForPath(r.path)
	if r.headerOnly {
		// A request without a body: an inference API call is missing its
		// model; anything else (GET /v1/models, health probes through the
		// gateway) is load-balanced over the pool without model or prompt.
		if kind != 0 {
			return nil, k.fail(missingModel(), "")
		}
		parsed = &openai.Parsed{}
	} else {
		var err error
		if parsed, err = openai.ParseRequest(kind, r.body); err != nil {
			var oe *openai.Error
			if !errors.As(err, &oe) {
				oe = openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, err.Error())
			}
			return nil, k.fail(oe, "")
		}
		if !parsed.HasModel() {
			return nil, k.fail(missingModel(), "")
		}
	}
	k.model = parsed.Model
	dec, err := k.p.director.Decide(ctx, &director.Request{
		ID:        k.requestID(r.headers),
		Pool:      k.p.pool,
		Parsed:    parsed,
		Body:      r.body,
		Objective: r.headers[HeaderInferenceObjective],
		Headers:   r.headers,
		Subset:    subsetHint(r.metadata),
	})
	if err != nil {
		var rej *director.Rejection
		if errors.As(err, &rej) {
			var extra []header
			if rej.Status == http.StatusTooManyRequests {
				extra = append(extra, header{"retry-after", "1"})
			}
			return nil, k.fail(rej.OpenAI(), rej.Reason, extra...)
		}
		return nil, k.fail(openai.NewError(http.StatusInternalServerError, openai.ErrTypeServer, "scheduling failed: "+err.Error()), "")
	}
	k.dec = dec
	addrs := make([]string, len(dec.Endpoints))
	for i, ep := range dec.Endpoints {
		addrs[i] = ep.Address
	}
	dest := strings.Join(addrs, ",")
	v := &verdict{metadata: lbMetadata(dest)}
	v.edits.setHeader(HeaderDestinationEndpoint, dest)
	if !r.headerOnly && dec.TargetModel != dec.Model {
		v.body, v.bodyChanged = dec.Body, true
	}
	k.att = dec.Start(ctx, dec.Endpoints[0])
	return v, nil
}

func missingModel() *openai.Error {
	e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "the request body must name a model")
	e.Param = "model"
	return e
}

func (k *pick) requestID(h map[string]string) string {
	if id := h["x-request-id"]; id != "" {
		return id
	}
	return strconv.FormatUint(k.p.ids.Add(1), 36)
}

// fail records a refused request and renders it for Envoy.
func (k *pick) fail(e *openai.Error, reason string, extra ...header) *rejection {
	k.done = true
	if m := k.p.metrics; m != nil {
		m.RequestDone(k.model, k.p.pool, e.Status(), time.Since(k.start), 0)
	}
	return errorRejection(e, reason, extra...)
}

func (k *pick) responseHeaders(ctx context.Context, r *httpResponse) bool {
	if k.dec == nil {
		return false
	}
	k.status = r.status
	if served := servedEndpoint(r.metadata); served != "" && served != k.att.Endpoint().Address {
		if ep := k.endpoint(served); ep != nil {
			// Envoy failed over: the primary attempt is over, the request
			// is in flight on the fallback now.
			k.att.Finish(ctx, scheduling.Response{Err: errNotServed})
			k.att = k.dec.Start(ctx, ep)
		} else {
			k.p.log.Debug("served endpoint is not one the picker chose", "served", served, "pool", k.p.pool)
		}
	}
	k.obs = openai.NewUsageObserver(r.headers["content-type"])
	if k.dec.Model != "" && k.dec.TargetModel != k.dec.Model {
		k.rewrite = newModelRewriter(k.dec.TargetModel, k.dec.Model)
	}
	if r.endOfStream {
		k.complete(ctx)
	}
	return k.rewrite != nil
}

func (k *pick) endpoint(addr string) *datastore.Endpoint {
	for _, ep := range k.dec.Endpoints {
		if ep.Address == addr {
			return ep
		}
	}
	return nil
}

func (k *pick) responseBody(ctx context.Context, chunk []byte, final, eos bool) []byte {
	if k.dec == nil || k.obs == nil {
		return chunk
	}
	if k.ttft == 0 && len(chunk) > 0 {
		k.ttft = time.Since(k.start)
	}
	_, _ = k.obs.Write(chunk)
	out := chunk
	if k.rewrite != nil {
		out = k.rewrite.write(chunk, final)
	}
	if eos {
		k.complete(ctx)
	}
	return out
}

// complete ends the attempt with what the response showed.
func (k *pick) complete(ctx context.Context) {
	if k.done {
		return
	}
	k.done = true
	var usage openai.Usage
	if k.obs != nil {
		usage, _ = k.obs.Usage()
	}
	cached := 0
	if usage.PromptTokensDetails != nil {
		cached = usage.PromptTokensDetails.CachedTokens
	}
	k.att.Finish(ctx, scheduling.Response{StatusCode: k.status, PromptTokens: usage.PromptTokens, CompletionTokens: usage.CompletionTokens, CachedTokens: cached})
	if m := k.p.metrics; m != nil {
		m.RequestDone(k.model, k.p.pool, k.status, time.Since(k.start), k.ttft)
		m.Tokens(k.model, k.p.pool, usage.PromptTokens, usage.CompletionTokens, cached)
	}
}

func (k *pick) end(ctx context.Context) {
	if k.att != nil && !k.done {
		// Envoy closed the stream (client gone, upstream reset, another
		// filter answered): the request is no longer in flight.
		k.done = true
		k.att.Finish(context.WithoutCancel(ctx), scheduling.Response{StatusCode: k.status, Err: errStreamEnded})
	}
}
