package openai

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// The strict request validator: the JSON types of the fields OpenAI
// defines for chat completions and completions, checked in one pass over
// the bytes with the same scanner ParseRequest uses (no tree, no second
// decode). Unknown fields are allowed anywhere: model servers accept
// extensions (vLLM's guided_json, top_k, ...), and refusing them would
// break clients that work without the gateway.

// jsonKinds is a set of JSON value kinds.
type jsonKinds uint8

const (
	kString jsonKinds = 1 << iota
	kNumber
	kInteger // a number without fraction or exponent
	kBool
	kObject
	kArray
	kNull
)

// shape is what a value may be: its kinds and, for objects and arrays,
// the shapes of its known members and of its elements.
type shape struct {
	kinds  jsonKinds
	fields map[string]*shape // known members of an object
	values *shape            // every member of an object (a map, e.g. logit_bias)
	elem   *shape            // every element of an array
}

// Request shapes, built once per Validator (not package state: each is
// immutable after NewValidator returns).
type requestShapes struct {
	chat, completion *shape
}

func newRequestShapes() *requestShapes {
	nullable := func(k jsonKinds) *shape { return &shape{kinds: k | kNull} }
	str, num, integer, boolean := nullable(kString), nullable(kNumber|kInteger), nullable(kInteger), nullable(kBool)
	anyObject := nullable(kObject)
	stop := &shape{kinds: kString | kArray | kNull, elem: &shape{kinds: kString}}
	streamOptions := &shape{kinds: kObject | kNull, fields: map[string]*shape{"include_usage": boolean}}
	logitBias := &shape{kinds: kObject | kNull, values: &shape{kinds: kNumber | kInteger}}
	common := map[string]*shape{
		"model":             str,
		"stream":            boolean,
		"stream_options":    streamOptions,
		"max_tokens":        integer,
		"n":                 integer,
		"temperature":       num,
		"top_p":             num,
		"presence_penalty":  num,
		"frequency_penalty": num,
		"logit_bias":        logitBias,
		"seed":              integer,
		"stop":              stop,
		"user":              str,
	}
	part := &shape{kinds: kObject | kNull, fields: map[string]*shape{
		"type":        {kinds: kString},
		"text":        str,
		"image_url":   {kinds: kObject | kString, fields: map[string]*shape{"url": {kinds: kString}, "detail": str}},
		"input_audio": {kinds: kObject, fields: map[string]*shape{"data": {kinds: kString}, "format": {kinds: kString}}},
	}}
	content := &shape{kinds: kString | kArray | kNull, elem: part}
	function := &shape{kinds: kObject, fields: map[string]*shape{
		"name": {kinds: kString}, "description": str, "parameters": anyObject, "strict": boolean,
	}}
	toolCall := &shape{kinds: kObject, fields: map[string]*shape{
		"id": {kinds: kString}, "type": {kinds: kString},
		"function": {kinds: kObject, fields: map[string]*shape{"name": {kinds: kString}, "arguments": {kinds: kString}}},
	}}
	message := &shape{kinds: kObject, fields: map[string]*shape{
		"role":         {kinds: kString},
		"content":      content,
		"name":         str,
		"tool_calls":   {kinds: kArray | kNull, elem: toolCall},
		"tool_call_id": str,
		"refusal":      str,
	}}
	chat := map[string]*shape{
		"messages":              {kinds: kArray, elem: message},
		"max_completion_tokens": integer,
		"logprobs":              boolean,
		"top_logprobs":          integer,
		"response_format":       {kinds: kObject | kNull, fields: map[string]*shape{"type": {kinds: kString}, "json_schema": anyObject}},
		"tools":                 {kinds: kArray | kNull, elem: &shape{kinds: kObject, fields: map[string]*shape{"type": {kinds: kString}, "function": function}}},
		"tool_choice":           {kinds: kString | kObject | kNull},
		"parallel_tool_calls":   boolean,
		"modalities":            {kinds: kArray | kNull, elem: &shape{kinds: kString}},
		"reasoning_effort":      str,
		"metadata":              {kinds: kObject | kNull, values: &shape{kinds: kString}},
		"store":                 boolean,
		"service_tier":          str,
	}
	completion := map[string]*shape{
		// A string, a batch of strings, token ids, or a batch of token id
		// lists.
		"prompt":   {kinds: kString | kArray | kNull, elem: &shape{kinds: kString | kInteger | kArray, elem: &shape{kinds: kInteger}}},
		"suffix":   str,
		"echo":     boolean,
		"best_of":  integer,
		"logprobs": integer,
	}
	for k, v := range common {
		chat[k] = v
		completion[k] = v
	}
	return &requestShapes{
		chat:       &shape{kinds: kObject, fields: chat},
		completion: &shape{kinds: kObject, fields: completion},
	}
}

// Validator checks request bodies against the OpenAI request shapes. It
// is immutable and safe for concurrent use; build one and share it.
type Validator struct {
	shapes *requestShapes
}

// NewValidator builds a Validator.
func NewValidator() *Validator { return &Validator{shapes: newRequestShapes()} }

// Validate checks the JSON types of the known fields of body, a request of
// kind that ParseRequest accepted (so known to be valid JSON). Kinds other
// than chat completions and completions are not checked. The error is a
// 400 naming the first offending field (e.g. "messages[2].content") in
// Param.
func (v *Validator) Validate(kind Kind, body []byte) *Error {
	var s *shape
	switch kind {
	case KindChat:
		s = v.shapes.chat
	case KindCompletion:
		s = v.shapes.completion
	default:
		return nil
	}
	var path []string // built only on error
	if _, bad, got := check(body, skipSpace(body, 0), s, &path); bad != nil {
		param := strings.Join(path, "")
		param = strings.TrimPrefix(param, ".")
		e := NewError(http.StatusBadRequest, ErrTypeInvalidRequest,
			param+" must be "+bad.kinds.describe()+", not "+got)
		e.Param = param
		return e
	}
	return nil
}

// check validates the value starting at doc[i] against s and returns
// where it ends. On a mismatch it returns the shape that failed and what
// the value was, and path holds the value's location, outermost first
// (filled in while unwinding, so a valid body builds no path). It is one
// pass: objects and arrays with known members are descended into as they
// are read, and only values without a shape to check are skipped whole.
// Members and elements are walked inline rather than with forEachMember's
// callback, which allocated a closure per object or array.
func check(doc []byte, i int, s *shape, path *[]string) (int, *shape, string) {
	c := doc[i]
	descend := (c == '{' && (s.fields != nil || s.values != nil)) || (c == '[' && s.elem != nil)
	if !descend {
		end, _ := skipValue(doc, i)
		if k := kindBits(doc[i:end]); s.kinds&k == 0 {
			return end, s, k.article()
		}
		return end, nil, ""
	}
	if c == '{' && s.kinds&kObject == 0 {
		end, _ := skipValue(doc, i)
		return end, s, kObject.article()
	}
	if c == '[' && s.kinds&kArray == 0 {
		end, _ := skipValue(doc, i)
		return end, s, kArray.article()
	}
	if c == '{' {
		i++
		for {
			i = skipSpace(doc, i)
			if doc[i] == '}' {
				return i + 1, nil, ""
			}
			if doc[i] == ',' {
				i++
				continue
			}
			ke, _ := skipString(doc, i)
			key := doc[i:ke]
			ms := skipSpace(doc, skipSpace(doc, ke)+1) // past ':'
			sub := s.values
			var f *shape
			if raw := key[1 : len(key)-1]; bytes.IndexByte(raw, '\\') < 0 {
				f = s.fields[string(raw)] // converted in the index expression: no allocation
			} else {
				f = s.fields[memberName(key)]
			}
			if f != nil {
				sub = f
			}
			if sub == nil {
				i, _ = skipValue(doc, ms) // unknown fields are allowed
				continue
			}
			end, bad, got := check(doc, ms, sub, path)
			if bad != nil {
				*path = append([]string{"." + memberName(key)}, *path...)
				return end, bad, got
			}
			i = end
		}
	}
	i++
	for n := 0; ; {
		i = skipSpace(doc, i)
		if doc[i] == ']' {
			return i + 1, nil, ""
		}
		if doc[i] == ',' {
			i++
			continue
		}
		end, bad, got := check(doc, i, s.elem, path)
		if bad != nil {
			*path = append([]string{"[" + strconv.Itoa(n) + "]"}, *path...)
			return end, bad, got
		}
		n++
		i = end
	}
}

// kindBits classifies a valid JSON value.
func kindBits(v []byte) jsonKinds {
	switch kindOf(v) {
	case 's':
		return kString
	case 'o':
		return kObject
	case 'a':
		return kArray
	case 'b':
		return kBool
	case 'n':
		return kNull
	}
	for _, c := range v {
		if c == '.' || c == 'e' || c == 'E' {
			return kNumber
		}
	}
	return kInteger
}

// describe renders an allowed set for an error message.
func (k jsonKinds) describe() string {
	var parts []string
	for _, x := range []struct {
		bit  jsonKinds
		name string
	}{{kString, "a string"}, {kInteger, "an integer"}, {kNumber, "a number"}, {kBool, "a boolean"}, {kObject, "an object"}, {kArray, "an array"}, {kNull, "null"}} {
		if k&x.bit == 0 || (x.bit == kInteger && k&kNumber != 0) {
			continue // "a number" covers integers
		}
		parts = append(parts, x.name)
	}
	switch len(parts) {
	case 1:
		return parts[0]
	default:
		return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
	}
}

// article names one kind for an error message.
func (k jsonKinds) article() string {
	switch k {
	case kNumber:
		return "a number with a fraction or exponent"
	default:
		return k.describe()
	}
}
