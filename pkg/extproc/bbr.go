package extproc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/openai"
)

// RouterOptions configures a BodyRouter.
type RouterOptions struct {
	// Adapters maps LoRA adapters to base models (nil: none).
	Adapters *datastore.AdapterMap
	// AllowMissingModel passes a request whose body names no model (or is
	// not JSON) through unchanged instead of rejecting it with 400. Off by
	// default: such a request must not reach a guessed backend.
	AllowMissingModel bool
	// Logger receives stream failures (default: discard).
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int
	// DefaultBodyMode is assumed when Envoy does not announce its body
	// modes (default FULL_DUPLEX_STREAMED).
	DefaultBodyMode BodyMode
}

// BodyRouter is igw's body-based router (REFERENCE §3): an ext_proc server
// that reads the model from an OpenAI request body and sets
// X-Gateway-Model-Name (and X-Gateway-Base-Model-Name for LoRA adapters)
// with clear_route_cache, so the gateway's HTTPRoutes can choose the
// InferencePool by model. The body itself passes unchanged.
type BodyRouter struct {
	extprocv3.UnimplementedExternalProcessorServer

	adapters     atomic.Pointer[datastore.AdapterMap]
	allowMissing bool
	log          *slog.Logger
	cfg          streamConfig
}

var _ extprocv3.ExternalProcessorServer = (*BodyRouter)(nil)

// NewBodyRouter builds a BodyRouter.
func NewBodyRouter(o RouterOptions) *BodyRouter {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.DefaultBodyMode == BodyModeNone {
		o.DefaultBodyMode = BodyModeFullDuplexStream
	}
	b := &BodyRouter{
		allowMissing: o.AllowMissingModel, log: o.Logger,
		cfg: streamConfig{strip: []string{HeaderModelName, HeaderBaseModelName}, maxBody: o.MaxBodyBytes, defaultMode: o.DefaultBodyMode},
	}
	b.adapters.Store(o.Adapters)
	return b
}

// SetAdapters swaps the adapter map (a reloaded file); streams already
// deciding keep the map they read.
func (b *BodyRouter) SetAdapters(m *datastore.AdapterMap) { b.adapters.Store(m) }

// Process serves one ext_proc stream.
func (b *BodyRouter) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	err := serveStream(srv, route{b}, &b.cfg)
	if err != nil {
		b.log.Debug("ext_proc stream failed", "err", err)
	}
	return err
}

// route is one request through the body-based router.
type route struct{ b *BodyRouter }

func (r route) request(_ context.Context, req *httpRequest) (*verdict, *rejection) {
	kind := openai.KindForPath(req.path)
	pass := &verdict{} // client-sent model headers are removed by the driver
	if req.headerOnly {
		// Same rule as the picker: only an inference API call needs a model.
		if kind != 0 && !r.b.allowMissing {
			return nil, errorRejection(missingModel(), "")
		}
		return pass, nil
	}
	parsed, err := openai.ParseRequest(kind, req.body)
	if err != nil {
		if r.b.allowMissing {
			return pass, nil
		}
		var oe *openai.Error
		if !errors.As(err, &oe) {
			oe = openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, err.Error())
		}
		return nil, errorRejection(oe, "")
	}
	if !parsed.HasModel() {
		if r.b.allowMissing {
			return pass, nil
		}
		return nil, errorRejection(missingModel(), "")
	}
	v := &verdict{}
	v.edits.setHeader(HeaderModelName, parsed.Model)
	if base, ok := r.b.adapters.Load().BaseModel(parsed.Model); ok {
		v.edits.setHeader(HeaderBaseModelName, base)
	}
	return v, nil
}

func (route) responseHeaders(context.Context, *httpResponse) (bool, []header) { return false, nil }

func (route) responseBody(_ context.Context, chunk []byte, _, _ bool) []byte { return chunk }

func (route) end(context.Context) {}

func missingModel() *openai.Error {
	e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "the request body must name a model")
	e.Param = "model"
	return e
}
