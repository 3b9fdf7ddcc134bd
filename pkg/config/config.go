package config

// Config is one loaded, defaulted and validated configuration file. It is
// immutable once returned: a reload produces a new Config, so a request in
// flight keeps the one it started with. Callers must not modify it.
//
// It holds the file's objects without knowing their types; each module
// reads its own kinds through typed accessors (guard.Find, auth.Keys,
// static.Pools, ...) built on All, Find and Get. Every object's namespace
// is set (DefaultNamespace when the file left it out) and every defaulted
// field is filled in, so consumers never re-apply defaults.
type Config struct {
	// Source is the name the file was parsed under (its path, for Load).
	Source string
	// Digest is the hex SHA-256 of the file's bytes; it identifies a
	// configuration version in logs and lets the Watcher skip unchanged
	// content.
	Digest string
	// SideFiles are the other files the configuration was built from (keys
	// files, JWKS files), with the digest of the content read, so that the
	// Watcher reloads when one of them changes.
	SideFiles []SideFile

	// docs are the documents in file order, followed by the default
	// objects of the singletons the file left out.
	docs []*document
}

// document is one parsed document: an object, or a Raw one.
type document struct {
	kind string
	ref  docRef
	obj  Object // nil for a raw kind
	raw  *Raw
}

// Raw is a document kept as written, for a consumer that owns its schema
// (the scheduler parses the EndpointPickerConfig).
type Raw struct {
	// Data is the document's YAML.
	Data []byte
	// Source locates the document for error messages, e.g.
	// `standalone.yaml: document 7 (EndpointPickerConfig)`; a consumer
	// prefixes its errors with it so they name the file and document like
	// every other configuration error.
	Source string
}

// SideFile is a file a document names, as read at load.
type SideFile struct {
	// Path is the path read (relative ones resolved against the
	// configuration file's directory).
	Path string
	// Digest is the hex SHA-256 of the content read.
	Digest string
}

// All returns the objects of c that are a T, in document order. T is
// usually one kind's pointer type (*RequestGuard); it may be an interface
// that objects of several kinds implement.
func All[T any](c *Config) []T {
	var out []T
	for _, d := range c.docs {
		if o, ok := d.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// First returns the first object of c that is a T (the only one, for a
// singleton kind), and whether there is one.
func First[T any](c *Config) (T, bool) {
	for _, d := range c.docs {
		if o, ok := d.obj.(T); ok {
			return o, true
		}
	}
	var zero T
	return zero, false
}

// Find returns the object of c that is a T with this namespace ("" for
// DefaultNamespace) and name, or the zero T.
func Find[T Object](c *Config, namespace, name string) T {
	namespace = orDefaultNamespace(namespace)
	for _, d := range c.docs {
		if o, ok := d.obj.(T); ok && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	var zero T
	return zero
}

// Get returns the object of kind with this namespace ("" for
// DefaultNamespace) and name, or nil. It is how a kind refers to another
// whose package it cannot import (see auth's quotas); Find is the typed
// form.
func (c *Config) Get(kind, namespace, name string) Object {
	namespace = orDefaultNamespace(namespace)
	for _, d := range c.docs {
		if d.kind == kind && d.obj != nil && d.obj.GetNamespace() == namespace && d.obj.GetName() == name {
			return d.obj
		}
	}
	return nil
}

// Raw returns the document of a kind kept as written (a Kind without New),
// or nil when the file has none.
func (c *Config) Raw(kind string) *Raw {
	for _, d := range c.docs {
		if d.kind == kind && d.raw != nil {
			return d.raw
		}
	}
	return nil
}
