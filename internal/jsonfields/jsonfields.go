// Package jsonfields tells which JSON object keys a Go struct accepts, so
// that configuration loaders can reject keys that encoding/json would match
// case-insensitively ("Weight" for "weight") or ignore. Both the
// standalone configuration loader and the EndpointPickerConfig parser use
// it; it runs only when configuration is loaded, so nothing is cached.
package jsonfields

import (
	"reflect"
	"strings"
)

// Of maps the JSON names of t's fields (t a struct type) to their types,
// following encoding/json's rules for embedded structs — which is what the
// Kubernetes `json:",inline"` convention relies on: an embedded struct's
// fields are promoted unless a field of the outer struct has the name.
func Of(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range Of(ft) {
					if _, shadowed := fields[k]; !shadowed {
						fields[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}
