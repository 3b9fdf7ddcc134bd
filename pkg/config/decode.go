package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/igw-dev/igw/internal/jsonfields"
)

// Decoding is done in two steps so that every problem names its field:
//
//  1. checkShape walks the generic JSON value of a document alongside the Go
//     type it will be decoded into and reports unknown fields and values of
//     the wrong JSON type with their full path (encoding/json only says
//     `unknown field "x"`, without a path, and stops at the first one).
//  2. Only a document without shape errors is decoded with encoding/json,
//     which then cannot fail on anything but what checkShape already
//     accepts.
//
// Field names are matched case-sensitively, as Kubernetes' strict decoding
// does, although encoding/json alone would accept "Spec" for "spec".

// shapeError is one problem found by checkShape.
type shapeError struct {
	field string
	err   error
}

// checkShape appends to errs every field of v that does not fit t.
func checkShape(path string, v any, t reflect.Type, errs *[]shapeError) {
	if v == nil {
		return // null is the zero value of anything, as for encoding/json
	}
	report := func(format string, args ...any) {
		*errs = append(*errs, shapeError{field: path, err: fmt.Errorf(format, args...)})
	}
	// Types that decode themselves (durations, quantities, times) are
	// checked by decoding them, so their own error message is reported at
	// this path.
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		if _, isString := v.(string); !isString && t.String() == "v1.Duration" {
			report("must be a duration string with a unit such as \"30s\" or \"5m\", not %s", jsonTypeName(v))
			return
		}
		raw, err := json.Marshal(v)
		if err != nil {
			report("%w", err)
			return
		}
		u := reflect.New(t).Interface().(json.Unmarshaler)
		if err := u.UnmarshalJSON(raw); err != nil {
			report("invalid %s: %s", typeHint(t), cleanJSONError(err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(path, v, t.Elem(), errs)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			report("must be an object, not %s", jsonTypeName(v))
			return
		}
		fields := jsonfields.Of(t)
		for _, key := range sortedKeys(obj) {
			ft, ok := fields[key]
			if !ok {
				*errs = append(*errs, shapeError{field: joinField(path, key), err: ErrUnknownField})
				continue
			}
			checkShape(joinField(path, key), obj[key], ft, errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			report("must be an object, not %s", jsonTypeName(v))
			return
		}
		if t.Key().Kind() != reflect.String {
			report("unsupported map key type %s", t.Key())
			return
		}
		for _, key := range sortedKeys(obj) {
			checkShape(path+"["+strconv.Quote(key)+"]", obj[key], t.Elem(), errs)
		}
	case reflect.Slice, reflect.Array:
		list, ok := v.([]any)
		if !ok {
			report("must be a list, not %s", jsonTypeName(v))
			return
		}
		for i, item := range list {
			checkShape(path+"["+strconv.Itoa(i)+"]", item, t.Elem(), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			report("must be a string, not %s (quote it)", jsonTypeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			report("must be true or false, not %s", jsonTypeName(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			report("must be an integer, not %s", jsonTypeName(v))
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			if isInteger(n) {
				report("%s is out of range for a %d-bit integer", n, t.Bits())
			} else {
				report("must be an integer, not %s", n)
			}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			report("must be a non-negative integer, not %s", jsonTypeName(v))
			return
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			report("must be a non-negative integer of at most %d bits, not %s", t.Bits(), n)
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			report("must be a number, not %s", jsonTypeName(v))
			return
		}
		if f, err := n.Float64(); err != nil || math.IsInf(f, 0) {
			report("must be a finite number, not %s", n)
		}
	case reflect.Interface:
		// Anything goes.
	default:
		report("unsupported Go type %s", t)
	}
}

// ErrUnknownField is the cause of every Error about a key the schema does
// not have, so that callers and tests can tell a typo (errors.Is) from a
// bad value.
var ErrUnknownField = errors.New("unknown field")

// decodeStrict decodes the generic value v (already checked by checkShape)
// into out.
func decodeStrict(v any, out any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("re-encoding document: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decoding document: %w", err)
	}
	return nil
}

// decodeGeneric parses JSON into maps, slices, strings, bools and
// json.Numbers (numbers stay exact, so 1e3 and 1.5 can be told from 1000
// and 1 when an integer is required).
func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func isInteger(n json.Number) bool {
	s := strings.TrimPrefix(n.String(), "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func jsonTypeName(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case json.Number:
		return "the number " + v.String()
	default:
		return fmt.Sprintf("%T", v)
	}
}

// typeHint describes the self-decoding types users meet in this schema.
func typeHint(t reflect.Type) string {
	switch t.String() {
	case "v1.Duration":
		return `duration (a string such as "30s" or "5m")`
	case "resource.Quantity":
		return "quantity (such as 10Mi or 10485760)"
	case "v1.Time":
		return "time (RFC 3339)"
	}
	return "value"
}

// cleanJSONError drops encoding/json's "json: " prefix, which means nothing
// to someone editing YAML.
func cleanJSONError(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}
