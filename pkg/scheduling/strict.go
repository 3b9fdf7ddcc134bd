package scheduling

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// encoding/json matches object keys to struct fields case-insensitively,
// so on its own a misspelt "weigth" is an error but "Weight" or
// "blocksize" would be silently accepted. checkFields closes that gap: it
// walks a generically decoded document against the target type and reports
// the first key that is not exactly a field's json name, with its path.

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// unknownFieldError names a key that matches no field.
type unknownFieldError struct{ path string }

// Error names the field by its path.
func (e *unknownFieldError) Error() string { return fmt.Sprintf("unknown field %q", e.path) }

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the json names of t's fields to their types. It runs
// only when configuration is loaded, so it is not cached.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
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
				for k, v := range jsonFields(ft) {
					out[k] = v
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
		out[name] = f.Type
	}
	return out
}

// checkFields reports the first key of v (a value decoded into any) that
// does not exactly name a field of t. Type mismatches are left to the real
// decoder, which reports them.
func checkFields(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return &unknownFieldError{path: joinPath(path, k)}
			}
			if err := checkFields(m[k], ft, joinPath(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			if err := checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		for k, e := range m {
			if err := checkFields(e, t.Elem(), joinPath(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}
