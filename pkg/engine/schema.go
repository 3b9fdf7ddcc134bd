package engine

import (
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/guard"
	"github.com/igw-dev/igw/pkg/policy/quota"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Kinds returns every kind of document the engine builds from, with the
// kinds of the data plane in front of it (plane: the standalone gateway's
// Gateway), in the order the loader's errors list them and runs their
// checks: the Kubernetes kinds, then the data plane's, then igw's.
//
// Each kind is declared by the module that consumes it, beside its code;
// the engine, as the one composition root, is the one place that lists
// them. An explicit list, rather than kinds registering themselves in
// init functions, keeps what a file may hold independent of what happens
// to be linked in, lets a test parse with exactly the kinds it needs, and
// keeps package config free of global state.
func Kinds(plane ...config.Kind) []config.Kind {
	kinds := []config.Kind{
		static.InferencePoolKind(),
		static.InferenceObjectiveKind(),
		static.InferenceModelRewriteKind(),
		EndpointPickerConfigKind(),
	}
	kinds = append(kinds, plane...)
	return append(kinds,
		static.ModelServerKind(),
		RouteKind(),
		auth.APIKeysKind(),
		auth.AuthPolicyKind(),
		guard.Kind(),
		quota.PolicyKind(),
		quota.StoreKind(),
	)
}

// Schema parses configuration files of Kinds(plane...).
func Schema(plane ...config.Kind) *config.Schema {
	return config.NewSchema(Kinds(plane...)...)
}

// EndpointPickerConfigKind declares the EndpointPickerConfig kind, with
// both the Gateway API Inference Extension and the llm-d apiVersions. The
// document is kept as written: the scheduler owns its schema and parses it
// when the engine builds (scheduling.ParseEndpointPickerConfig), with its
// errors prefixed by where the document is (config.Raw.Source).
func EndpointPickerConfigKind() config.Kind {
	return config.Kind{
		Kind:        scheduling.KindEndpointPickerConfig,
		APIVersions: []string{scheduling.APIVersionInferenceExtension, scheduling.APIVersionLLMD},
		Singleton:   true,
	}
}

// endpointPickerConfig is cfg's EndpointPickerConfig as written, or nil
// (the default profile), and where it is, for errors.
func endpointPickerConfig(cfg *config.Config) (data []byte, source string) {
	if r := cfg.Raw(scheduling.KindEndpointPickerConfig); r != nil {
		return r.Data, r.Source
	}
	return nil, ""
}

// RequestBounds are the limits a configuration puts on every request,
// whichever data plane receives it: the largest body, and how long a
// request may take when its Route sets no timeout. The standalone data
// plane's Gateway kind (package gateway) carries them; the engine finds
// them through this interface because the gateway is built on the engine,
// not the reverse. Without such an object in the configuration the data
// plane's own bounds apply.
type RequestBounds interface {
	config.Object
	// MaxRequestBodyBytes is the largest request body accepted.
	MaxRequestBodyBytes() int64
	// RequestTimeout bounds a request whose Route sets no timeout; 0
	// means no limit.
	RequestTimeout() time.Duration
}
