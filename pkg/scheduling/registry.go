package scheduling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// Factory builds one plugin instance from its configuration. name is the
// instance name (never empty); params is the instance's "parameters" as
// JSON (nil or "null" when absent). A factory validates everything and
// returns an error naming the bad parameter, so that a bad configuration
// fails when the scheduler is built. DecodeParameters does the strict
// decoding.
type Factory func(name string, params json.RawMessage) (Plugin, error)

// Registry maps plugin type names to factories. It is a plain value built
// by a constructor (no package-level registration), so tests and embedders
// can build registries with exactly the plugins they want. Register every
// type before the registry is used; after that it is read-only and safe for
// concurrent use.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry. The built-in plugins are
// registered by plugins.NewRegistry (package
// github.com/igw-dev/igw/pkg/scheduling/plugins), which cannot live here
// because the plugins depend on this package.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}}
}

// Register adds a factory under a type name. Registering a type twice is an
// error, so two plugins can never silently shadow each other.
func (r *Registry) Register(pluginType string, f Factory) error {
	if pluginType == "" {
		return errors.New("scheduling: plugin type must not be empty")
	}
	if f == nil {
		return fmt.Errorf("scheduling: plugin type %q: nil factory", pluginType)
	}
	if _, ok := r.factories[pluginType]; ok {
		return fmt.Errorf("scheduling: plugin type %q registered twice", pluginType)
	}
	r.factories[pluginType] = f
	return nil
}

// Has reports whether a type is registered.
func (r *Registry) Has(pluginType string) bool {
	_, ok := r.factories[pluginType]
	return ok
}

// Types lists the registered type names, sorted, e.g. for error messages
// and `igw epp --help`.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New builds an instance of pluginType named name (name defaults to the
// type). Errors name the plugin and wrap the factory's error.
func (r *Registry) New(pluginType, name string, params json.RawMessage) (Plugin, error) {
	if name == "" {
		name = pluginType
	}
	f, ok := r.factories[pluginType]
	if !ok {
		return nil, fmt.Errorf("plugin %q: unknown plugin type %q (known types: %s)",
			name, pluginType, strings.Join(r.Types(), ", "))
	}
	p, err := f(name, params)
	if err != nil {
		return nil, fmt.Errorf("plugin %q (type %s): %w", name, pluginType, err)
	}
	if p == nil {
		return nil, fmt.Errorf("plugin %q (type %s): factory returned nil", name, pluginType)
	}
	return p, nil
}

// DecodeParameters decodes a plugin's JSON parameters into into (a pointer
// to a struct with json tags, pre-filled with defaults) strictly: an unknown
// parameter or a value of the wrong type is an error that names the
// parameter. Absent or null parameters leave the defaults untouched.
func DecodeParameters(params json.RawMessage, into any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	if trimmed[0] != '{' {
		return errors.New("parameters must be a mapping")
	}
	var generic any
	if err := json.Unmarshal(trimmed, &generic); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if err := checkFields(generic, reflect.TypeOf(into), ""); err != nil {
		var uf *unknownFieldError
		if errors.As(err, &uf) {
			return fmt.Errorf("unknown parameter %q", uf.path)
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			return fmt.Errorf("parameter %q: cannot use %s as %s: %w", typeErr.Field, typeErr.Value, typeErr.Type, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return fmt.Errorf("unknown parameter %s: %w", field, err)
		default:
			return fmt.Errorf("parameters: %w", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("parameters: trailing data after the mapping")
	}
	return nil
}

// ParamError builds the error a factory returns for an invalid parameter
// value, in the one format every plugin uses: parameter "x": reason.
func ParamError(param string, format string, args ...any) error {
	return fmt.Errorf("parameter %q: %s", param, fmt.Sprintf(format, args...))
}
