package extproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"sigs.k8s.io/yaml"

	"github.com/igw-dev/igw/pkg/openai"
)

// AdapterMap tells the body-based router which requested models are LoRA
// adapters and which base model serves each, so an HTTPRoute can match on
// X-Gateway-Base-Model-Name and send every adapter of a base model to that
// base model's pool. It is immutable; a reload builds a new one.
//
// The file is a YAML list with the data keys of the Kubernetes ConfigMaps
// labelled inference.networking.k8s.io/bbr-managed=true, one entry per
// base model:
//
//	# adapters.yaml
//	- baseModel: meta-llama/Llama-3.1-8B-Instruct
//	  adapters:
//	  - food-review
//	  - sql-lora
//	- baseModel: Qwen/Qwen2.5-7B-Instruct
//	  adapters: [support-bot]
//
// Unknown keys, an empty baseModel, an adapter named twice (or named like
// a base model) are errors.
type AdapterMap struct {
	base map[string]string // adapter or base model → base model
}

// AdapterEntry is one base model and its adapters, as written in the file.
type AdapterEntry struct {
	BaseModel string   `json:"baseModel"`
	Adapters  []string `json:"adapters"`
}

// NewAdapterMap validates entries and builds the map.
func NewAdapterMap(entries []AdapterEntry) (*AdapterMap, error) {
	m := &AdapterMap{base: map[string]string{}}
	isBase := map[string]bool{}
	for i, e := range entries {
		if strings.TrimSpace(e.BaseModel) == "" {
			return nil, fmt.Errorf("[%d].baseModel: required", i)
		}
		if isBase[e.BaseModel] {
			return nil, fmt.Errorf("[%d].baseModel: %q is listed twice", i, e.BaseModel)
		}
		isBase[e.BaseModel] = true
	}
	for i, e := range entries {
		m.base[e.BaseModel] = e.BaseModel
		for j, a := range e.Adapters {
			switch {
			case strings.TrimSpace(a) == "":
				return nil, fmt.Errorf("[%d].adapters[%d]: empty adapter name", i, j)
			case isBase[a]:
				return nil, fmt.Errorf("[%d].adapters[%d]: %q is also a baseModel", i, j, a)
			case m.base[a] != "":
				return nil, fmt.Errorf("[%d].adapters[%d]: adapter %q is already mapped to %q", i, j, a, m.base[a])
			}
			m.base[a] = e.BaseModel
		}
	}
	return m, nil
}

// ParseAdapterMap reads the YAML format above; name prefixes errors.
func ParseAdapterMap(name string, data []byte) (*AdapterMap, error) {
	var entries []AdapterEntry
	if err := yaml.UnmarshalStrict(data, &entries); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, err := NewAdapterMap(entries)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// LoadAdapterMap reads an adapter map file.
func LoadAdapterMap(path string) (*AdapterMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("adapter map: %w", err)
	}
	return ParseAdapterMap(path, data)
}

// BaseModel returns the base model of model: its base when it is a listed
// adapter, itself when it is a listed base model, and false when the map
// does not know it.
func (m *AdapterMap) BaseModel(model string) (string, bool) {
	if m == nil {
		return "", false
	}
	b, ok := m.base[model]
	return b, ok
}

// RouterOptions configures a BodyRouter.
type RouterOptions struct {
	// Adapters maps LoRA adapters to base models (nil: none).
	Adapters *AdapterMap
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

	adapters     atomic.Pointer[AdapterMap]
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
func (b *BodyRouter) SetAdapters(m *AdapterMap) { b.adapters.Store(m) }

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

func (route) responseHeaders(context.Context, *httpResponse) bool { return false }

func (route) responseBody(_ context.Context, chunk []byte, _, _ bool) []byte { return chunk }

func (route) end(context.Context) {}
