// Package config loads igw's configuration: one YAML file of several
// documents separated by "---", each one object of a kind. It knows no
// kind itself. The module that consumes a kind declares it beside its code
// (Kind): the Go type that is its schema, its defaults and validation, and
// the checks that need the rest of the file, the way a scheduling plugin
// declares its factory. The engine, igw's one composition root, lists the
// kinds a file may hold and hands them to NewSchema; this package imports
// none of the modules, so a module's configuration changes with the module,
// and the loader's guarantees hold for every kind alike:
//
//	kind                          declared by                 apiVersion
//	InferencePool                 discovery/static            inference.networking.k8s.io/v1
//	InferenceObjective            discovery/static            inference.networking.x-k8s.io/v1alpha2
//	InferenceModelRewrite         discovery/static            inference.networking.x-k8s.io/v1alpha2
//	EndpointPickerConfig (raw)    engine, for scheduling      inference.networking.x-k8s.io/v1alpha1, llm-d.ai/v1alpha1
//	Gateway                       gateway                     igw.dev/v1alpha1
//	ModelServer                   discovery/static            igw.dev/v1alpha1
//	Route                         engine                      igw.dev/v1alpha1
//	APIKeys, AuthPolicy           policy/auth                 igw.dev/v1alpha1
//	RequestGuard                  policy/guard                igw.dev/v1alpha1
//	QuotaPolicy, QuotaStore       policy/quota                igw.dev/v1alpha1
//
// Resources that exist in Kubernetes keep their exact Kubernetes kind and
// schema, so the same YAML moves to a cluster unchanged; what only igw has
// lives in the group igw.dev/v1alpha1. A kind declared without an object
// type (the EndpointPickerConfig) is kept as written (Config.Raw) for the
// module that owns its schema to parse.
//
// A Config holds the objects without knowing their types; each module
// reads its own through typed accessors over All, First, Find and Get
// (static.Pools, guard.Find, auth.Keys, ...).
//
// # Validation
//
// Parsing is strict, so that a typo fails at load rather than silently
// changing behaviour: unknown fields, values of the wrong type, invalid
// values, duplicate names, singletons that appear twice and whatever a
// kind's checks reject (references to missing objects, pools that resolve
// to no endpoint, routes that match exactly the same requests) are all
// errors. Parse reports all of them at once; each names the file, the
// document and the field:
//
//	standalone.yaml: document 3 (InferencePool "llama"): spec.targetPorts[0].number: must be 1..65535, not 0
//
// Documents are numbered from 1, counting only non-empty ones. Defaults are
// applied during parsing, so a Config never has an unset defaulted field,
// and a singleton kind with a default object is never missing. Kinds'
// checks across documents run only once every document is valid on its
// own: cross-references between broken documents would only add noise.
//
// YAML is read as Kubernetes reads it (YAML 1.1): unquoted yes, no, on, off,
// y and n are booleans and 8000 is a number, so a model name, label value
// or header value that looks like one must be quoted; the error says so.
// Files a document names (keys files, JWKS files) are read at every load,
// relative to the configuration file (Fields.ReadFile).
//
// # Reloading
//
// A Watcher reloads the file when it or a file it names changes, or on
// SIGHUP, and hands each valid new Config to a callback; an invalid file
// keeps the previous Config in effect.
//
// This package depends only on apimachinery and the YAML decoder: the
// modules turn a Config into running state.
package config
