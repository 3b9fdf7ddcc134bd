package config

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IGWAPIVersion is the apiVersion of the kinds only igw has.
const IGWAPIVersion = "igw.dev/v1alpha1"

// DefaultNamespace is the namespace of an object whose document names none.
const DefaultNamespace = "default"

// Object is a decoded document: a pointer to a struct that embeds
// metav1.TypeMeta (inline) and metav1.ObjectMeta (as metadata), the shape
// of every Kubernetes kind, so the loader can check and default metadata
// without knowing the kind.
type Object interface {
	metav1.Object
}

// Kind is one kind of document a configuration file may hold, as the
// module that consumes it declares it: the schema (the type New returns),
// the defaults and validation (Validate), and what depends on other
// documents (Check). A module declares its kinds beside its code, the way
// a scheduling plugin declares its factory, and the loader never imports
// it: whoever composes the program (package engine) hands the kinds to
// NewSchema, so the kinds a file may hold are one explicit list, not
// whatever happens to be linked in.
type Kind struct {
	// Kind is the value of the document's kind field.
	Kind string
	// APIVersions are the apiVersions accepted with it.
	APIVersions []string

	// New returns an empty object to decode a document into; its JSON
	// tags are the schema, and decoding is strict (see Schema.Parse). Nil
	// keeps the document as written, for a consumer that owns its schema
	// and parses it later (see Config.Raw).
	New func() Object

	// Named says metadata.name is required. Objects of a named kind are
	// unique by namespace and name, as in Kubernetes.
	Named bool
	// Singleton says a file holds at most one.
	Singleton bool
	// Default, for a Singleton, returns the object a file without one
	// gets, every default applied, so that consumers never handle its
	// absence. Nil leaves such a file without one.
	Default func() Object

	// Validate applies the kind's defaults to one decoded object and
	// reports what is invalid in it to f, field by field. The loader has
	// checked the metadata and set the namespace before. Defaulting and
	// validation go together so that each default is stated once, next to
	// the rule the defaulted value must then satisfy.
	Validate func(obj Object, f *Fields)

	// Check runs once every document is valid on its own and the names
	// are unique: references to other documents, and the defaults that
	// depend on them. It reports each problem against the object it is
	// in (Report.In). Checks run in the order the kinds were given to
	// NewSchema.
	Check func(cfg *Config, r *Report)
}

// Schema is the set of kinds a configuration file may hold; it parses
// files.
type Schema struct {
	kinds  []Kind
	byName map[string]*Kind
	names  string // "InferencePool, InferenceObjective, ...", for errors
}

// NewSchema accepts kinds, in the order error messages list them and
// checks run. It panics on a kind declared twice or declared
// inconsistently: that is a programming error, like registering one HTTP
// pattern twice.
func NewSchema(kinds ...Kind) *Schema {
	s := &Schema{kinds: make([]Kind, len(kinds)), byName: make(map[string]*Kind, len(kinds))}
	names := make([]string, len(kinds))
	for i, k := range kinds {
		switch {
		case k.Kind == "":
			panic(fmt.Sprintf("config: kind %d has no name", i))
		case len(k.APIVersions) == 0:
			panic(fmt.Sprintf("config: kind %s has no apiVersion", k.Kind))
		case s.byName[k.Kind] != nil:
			panic(fmt.Sprintf("config: kind %s declared twice", k.Kind))
		case k.New == nil && (k.Validate != nil || k.Default != nil || k.Named):
			panic(fmt.Sprintf("config: kind %s is kept raw, so it has no object to name, default or validate", k.Kind))
		case k.Default != nil && !k.Singleton:
			panic(fmt.Sprintf("config: kind %s has a default object but is not a singleton", k.Kind))
		}
		k.APIVersions = append([]string(nil), k.APIVersions...)
		s.kinds[i] = k
		s.byName[k.Kind] = &s.kinds[i]
		names[i] = k.Kind
	}
	s.names = strings.Join(names, ", ")
	return s
}

// NamespacedName renders namespace/name, the form used for pools in the
// datastore and in messages.
func NamespacedName(namespace, name string) string {
	return orDefaultNamespace(namespace) + "/" + name
}

func orDefaultNamespace(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}
