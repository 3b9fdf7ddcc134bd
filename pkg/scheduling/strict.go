package scheduling

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/igw-dev/igw/internal/jsonfields"
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
		fields := jsonfields.Of(t)
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
