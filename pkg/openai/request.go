package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Kind is the API a request body belongs to (OpenAI's, or Anthropic's
// Messages API); it decides which fields carry the prompt and the shape of
// errors.
type Kind uint8

// The APIs the gateway routes.
const (
	KindChat Kind = iota + 1
	KindCompletion
	KindEmbeddings
	KindResponses
	// KindMessages is Anthropic's Messages API (POST /v1/messages), which
	// vLLM also serves and coding agents speak.
	KindMessages
)

// KindForPath maps a request path to its API, or 0 if it is not one.
func KindForPath(path string) Kind {
	switch path {
	case "/v1/chat/completions":
		return KindChat
	case "/v1/completions":
		return KindCompletion
	case "/v1/embeddings":
		return KindEmbeddings
	case "/v1/responses":
		return KindResponses
	case "/v1/messages":
		return KindMessages
	}
	return 0
}

// Parsed is what the gateway needs to know about a request body, read in
// one pass: enough to route, account and rewrite it, without keeping a
// decoded copy of the whole document.
type Parsed struct {
	Kind  Kind
	Model string
	// Stream and IncludeUsage say how the response will come back.
	Stream       bool
	IncludeUsage bool
	// MaxTokens is the client's output cap (max_completion_tokens,
	// max_tokens or max_output_tokens); 0 when absent.
	MaxTokens int
	// Messages is the number of messages of a chat completion.
	Messages int
	// Prompt is the text prefix-cache affinity hashes: for chat, every
	// message as "role\ncontent\n" in order, so a conversation that extends
	// another has it as a byte prefix; for completions and embeddings the
	// (first) input; for responses the instructions and input; for
	// Anthropic messages the system prompt as a "system" message followed
	// by the messages as for chat.
	Prompt []byte

	// modelStart and modelEnd delimit the model value (with its quotes) in
	// the body, for rewriting by patching bytes.
	modelStart, modelEnd int
	// Raw fields read after the walk (their order in the body must not
	// matter).
	instructions         []byte
	inputStart, inputEnd int
	system               []byte // Anthropic's system prompt, raw
	messagesStart        int    // Anthropic's messages, raw range
	messagesEnd          int
}

// requestError is a 400 naming the offending parameter.
func requestError(param, format string, args ...any) *Error {
	e := NewError(http.StatusBadRequest, ErrTypeInvalidRequest, fmt.Sprintf(format, args...))
	e.Param = param
	return e
}

// ParseRequest reads body as a request of kind. Malformed JSON, a body that
// is not an object, or fields of the wrong type are 400 errors (*Error)
// naming the field. A missing model is not an error here: whether it is
// depends on the route.
//
// It validates the document once (validJSON) and then reads only the
// fields it needs straight from the bytes, decoding the prompt text into
// one buffer: no tree, no per-message values. Field names match exactly,
// as the OpenAI API and vLLM do (encoding/json would also accept "Model").
func ParseRequest(kind Kind, body []byte) (*Parsed, error) {
	return ParseRequestInto(kind, body, nil)
}

// ParseRequestInto is ParseRequest decoding the prompt into prompt's
// memory (from length 0) while it is large enough, so a caller that
// recycles prompt buffers (the Director, for prompts of hundreds of
// kilobytes) allocates none. The prompt of a body is never longer than
// the body.
func ParseRequestInto(kind Kind, body, prompt []byte) (*Parsed, error) {
	if !validJSON(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, requestError("", "the request body is not valid JSON: %v", err)
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return nil, requestError("", "the request body must be a JSON object")
	}
	p := &Parsed{Kind: kind, Prompt: prompt[:0]}
	var limits [3]*int // max_completion_tokens, max_tokens, max_output_tokens: the first present wins
	var perr *Error
	forEachMember(body, i, func(rawKey []byte, vs, ve int) bool {
		v := body[vs:ve]
		switch key := memberName(rawKey); key {
		case "model":
			switch kindOf(v) {
			case 's':
				p.Model = stringValue(v)
			case 'n':
				p.Model = ""
			default:
				perr = requestError("model", "model must be a string")
				return false
			}
			p.modelStart, p.modelEnd = vs, ve
		case "stream":
			b, ok := boolValue(v)
			if !ok {
				perr = requestError("stream", "stream must be a boolean")
				return false
			}
			p.Stream = b
		case "stream_options":
			switch kindOf(v) {
			case 'n':
				p.IncludeUsage = false
			case 'o':
				p.IncludeUsage = false
				forEachMember(body, vs, func(k []byte, s, e int) bool {
					if memberName(k) == "include_usage" {
						b, ok := boolValue(body[s:e])
						if !ok {
							perr = requestError("stream_options.include_usage", "stream_options.include_usage must be a boolean")
							return false
						}
						p.IncludeUsage = b
					}
					return true
				})
			default:
				perr = requestError("stream_options", "stream_options must be an object")
			}
		case "max_completion_tokens", "max_tokens", "max_output_tokens":
			n, ok := intValue(v)
			if !ok {
				perr = requestError(key, "%s must be an integer", key)
				return false
			}
			switch key {
			case "max_completion_tokens":
				limits[0] = n
			case "max_tokens":
				limits[1] = n
			default:
				limits[2] = n
			}
		case "messages":
			switch kind {
			case KindChat:
				p.Prompt, p.Messages, perr = appendMessages(p.Prompt[:0], body, vs, ve)
			case KindMessages:
				p.messagesStart, p.messagesEnd = vs, ve
			}
		case "system":
			if kind == KindMessages {
				switch kindOf(v) {
				case 's', 'a':
					p.system = v
				case 'n':
					p.system = nil
				default:
					perr = requestError("system", "system must be a string or an array of content blocks")
				}
			}
		case "prompt":
			if kind == KindCompletion {
				p.Prompt, perr = appendPrompt(p.Prompt[:0], body, vs, ve)
			}
		case "input":
			if kind == KindEmbeddings || kind == KindResponses {
				p.inputStart, p.inputEnd = vs, ve
			}
		case "instructions":
			if kind != KindEmbeddings && kind != KindResponses {
				break
			}
			switch kindOf(v) {
			case 's':
				p.instructions = v
			case 'n':
				p.instructions = nil
			default:
				perr = requestError("instructions", "instructions must be a string")
			}
		}
		return perr == nil
	})
	if perr != nil {
		return nil, perr
	}
	for _, v := range limits {
		if v == nil {
			continue
		}
		if *v < 0 {
			return nil, requestError("max_tokens", "max_tokens must not be negative")
		}
		p.MaxTokens = *v
		break
	}
	if kind == KindMessages {
		// Anthropic streams always carry usage (message_start and
		// message_delta events).
		p.IncludeUsage = p.Stream
		if p.system != nil {
			p.Prompt = append(p.Prompt, "system\n"...)
			if p.Prompt, perr = appendContent(p.Prompt, p.system, 0, len(p.system), "system"); perr != nil {
				return nil, perr
			}
			p.Prompt = append(p.Prompt, '\n')
		}
		if p.messagesEnd > 0 {
			if p.Prompt, p.Messages, perr = appendMessages(p.Prompt, body, p.messagesStart, p.messagesEnd); perr != nil {
				return nil, perr
			}
		}
	}
	if kind == KindEmbeddings || kind == KindResponses {
		if p.instructions != nil {
			p.Prompt = appendStringValue(p.Prompt, p.instructions)
		}
		if p.inputEnd > 0 {
			p.Prompt = appendInput(p.Prompt, body[p.inputStart:p.inputEnd])
		}
	}
	return p, nil
}

// memberName decodes an object key (quoted); keys almost never have
// escapes, so the common case does not allocate.
func memberName(raw []byte) string {
	for _, c := range raw {
		if c == '\\' {
			return string(appendStringValue(nil, raw))
		}
	}
	return string(raw[1 : len(raw)-1]) // the compiler does not allocate for a switch on this
}

func boolValue(v []byte) (bool, bool) {
	switch kindOf(v) {
	case 'b':
		return v[0] == 't', true
	case 'n':
		return false, true
	}
	return false, false
}

// intValue reads an integer (nil for null). Fractions and exponents are
// not integers, as encoding/json decides for an int field.
func intValue(v []byte) (*int, bool) {
	switch kindOf(v) {
	case 'n':
		return nil, true
	case 'd':
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return nil, false
		}
		return &n, true
	}
	return nil, false
}

// appendMessages appends "role\ncontent\n" for every message of the array
// at doc[vs:ve].
func appendMessages(dst, doc []byte, vs, ve int) ([]byte, int, *Error) {
	n := 0
	switch kindOf(doc[vs:ve]) {
	case 'n':
		return dst, 0, nil
	case 'a':
	default:
		return dst, 0, requestError("messages", "messages must be an array of messages")
	}
	var perr *Error
	forEachElement(doc, vs, func(es, ee int) bool {
		n++
		m := doc[es:ee]
		switch kindOf(m) {
		case 'n':
			dst = append(dst, '\n', '\n')
			return true
		case 'o':
		default:
			perr = requestError("messages", "each message must be an object")
			return false
		}
		var role, content []byte
		contentStart := -1
		forEachMember(doc, es, func(k []byte, s, e int) bool {
			v := doc[s:e]
			switch memberName(k) {
			case "role":
				switch kindOf(v) {
				case 's':
					role = v
				case 'n':
					role = nil
				default:
					perr = requestError("messages", "a message's role must be a string")
				}
			case "name":
				if kk := kindOf(v); kk != 's' && kk != 'n' {
					perr = requestError("messages", "a message's name must be a string")
				}
			case "content":
				switch kindOf(v) {
				case 's', 'a':
					content, contentStart = v, s
				case 'n':
					content = nil
				default:
					perr = requestError("messages", "content must be a string or an array of content parts")
				}
			}
			return perr == nil
		})
		if perr != nil {
			return false
		}
		if role != nil {
			dst = appendStringValue(dst, role)
		}
		dst = append(dst, '\n')
		if content != nil {
			if dst, perr = appendContent(dst, doc, contentStart, contentStart+len(content), "messages"); perr != nil {
				return false
			}
		}
		dst = append(dst, '\n')
		return true
	})
	return dst, n, perr
}

// appendContent appends a message content: a string, or the texts of an
// array of content parts joined by newlines (only "text" and "input_text"
// parts carry prompt text).
func appendContent(dst, doc []byte, vs, ve int, param string) ([]byte, *Error) {
	v := doc[vs:ve]
	switch kindOf(v) {
	case 's':
		return appendStringValue(dst, v), nil
	case 'n':
		return dst, nil
	case 'a':
	default:
		return dst, requestError(param, "content must be a string or an array of content parts")
	}
	var perr *Error
	start := len(dst)
	forEachElement(doc, vs, func(ps, pe int) bool {
		switch kindOf(doc[ps:pe]) {
		case 'n':
			return true
		case 'o':
		default:
			perr = requestError(param, "each content part must be an object")
			return false
		}
		var typ string
		var text []byte
		forEachMember(doc, ps, func(k []byte, s, e int) bool {
			v := doc[s:e]
			switch memberName(k) {
			case "type":
				switch kindOf(v) {
				case 's':
					typ = stringValue(v)
				case 'n':
					typ = ""
				default:
					perr = requestError(param, "a content part's type must be a string")
				}
			case "text":
				switch kindOf(v) {
				case 's':
					text = v
				case 'n':
					text = nil
				default:
					perr = requestError(param, "a content part's text must be a string")
				}
			}
			return perr == nil
		})
		if perr != nil {
			return false
		}
		if typ != "text" && typ != "input_text" {
			return true
		}
		if len(dst) > start { // parts are joined by newlines once there is text
			dst = append(dst, '\n')
		}
		if text != nil {
			dst = appendStringValue(dst, text)
		}
		return true
	})
	return dst, perr
}

// appendPrompt appends a completion prompt: a string, the first of an
// array of strings, or token ids (the first list of a batch) as decimal
// numbers each followed by a space.
func appendPrompt(dst, doc []byte, vs, ve int) ([]byte, *Error) {
	v := doc[vs:ve]
	switch kindOf(v) {
	case 's':
		return appendStringValue(dst, v), nil
	case 'n':
		return dst, nil
	case 'a':
	default:
		return dst, requestError("prompt", "prompt must be a string, an array of strings or an array of token ids")
	}
	fs, fe := -1, -1
	forEachElement(doc, vs, func(s, e int) bool { fs, fe = s, e; return false })
	if fs < 0 {
		return dst, requestError("prompt", "prompt must not be an empty array")
	}
	switch kindOf(doc[fs:fe]) {
	case 's':
		return appendStringValue(dst, doc[fs:fe]), nil
	case 'a':
		return appendTokenIDs(dst, doc, fs)
	default:
		return appendTokenIDs(dst, doc, vs)
	}
}

func appendTokenIDs(dst, doc []byte, vs int) ([]byte, *Error) {
	var perr *Error
	forEachElement(doc, vs, func(s, e int) bool {
		n, err := strconv.ParseUint(string(doc[s:e]), 10, 32)
		if err != nil {
			perr = requestError("prompt", "token ids must be non-negative integers")
			return false
		}
		dst = strconv.AppendUint(dst, n, 10)
		dst = append(dst, ' ')
		return true
	})
	return dst, perr
}

// appendInput appends the input of an embeddings or responses request:
// its text when it is a string or content parts, else its JSON, hashed as
// is (a batch of strings, token ids, structured input items).
func appendInput(dst, v []byte) []byte {
	out, perr := appendContent(dst, v, 0, len(v), "input")
	if perr != nil {
		return append(dst, v...)
	}
	return out
}

// HasModel reports whether the body named a model.
func (p *Parsed) HasModel() bool { return p.Model != "" }

// WithModel returns body with its model replaced by model, patching only
// the model's bytes. body must be the body p was parsed from. If the body
// had no model, one is added as the first field.
func (p *Parsed) WithModel(body []byte, model string) []byte {
	quoted, _ := json.Marshal(model)
	if p.modelEnd == 0 { // no "model" key at all
		i := bytes.IndexByte(body, '{')
		out := make([]byte, 0, len(body)+len(quoted)+10)
		out = append(out, body[:i+1]...)
		out = append(out, `"model":`...)
		out = append(out, quoted...)
		rest := bytes.TrimLeft(body[i+1:], " \t\r\n")
		if len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...)
	}
	out := make([]byte, 0, len(body)-(p.modelEnd-p.modelStart)+len(quoted))
	out = append(out, body[:p.modelStart]...)
	out = append(out, quoted...)
	return append(out, body[p.modelEnd:]...)
}

// topLevelValue finds the byte range of the value of key in the top-level
// object of a valid JSON document. The last occurrence wins, as it does for
// encoding/json.
func topLevelValue(doc []byte, key string) (start, end int, found bool) {
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return 0, 0, false
	}
	i++
	for {
		i = skipSpace(doc, i)
		if i >= len(doc) || doc[i] == '}' {
			return start, end, found
		}
		if doc[i] == ',' {
			i++
			continue
		}
		ks := i
		ke, ok := skipString(doc, i)
		if !ok {
			return 0, 0, false
		}
		i = skipSpace(doc, ke)
		if i >= len(doc) || doc[i] != ':' {
			return 0, 0, false
		}
		vs := skipSpace(doc, i+1)
		ve, ok := skipValue(doc, vs)
		if !ok {
			return 0, 0, false
		}
		if keyEquals(doc[ks:ke], key) {
			start, end, found = vs, ve, true
		}
		i = ve
	}
}

func keyEquals(quoted []byte, key string) bool {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == key
	}
	var s string
	return json.Unmarshal(quoted, &s) == nil && s == key
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at doc[i] == '"'.
// It jumps from quote to quote with bytes.IndexByte (vectorized), since
// prompts are long strings: a quote ends the string unless an odd number
// of backslashes precedes it.
func skipString(doc []byte, i int) (int, bool) {
	if i >= len(doc) || doc[i] != '"' {
		return 0, false
	}
	for j := i + 1; ; {
		k := bytes.IndexByte(doc[j:], '"')
		if k < 0 {
			return 0, false
		}
		q := j + k
		escapes := 0
		for b := q - 1; b > i && doc[b] == '\\'; b-- {
			escapes++
		}
		if escapes%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
}

// skipValue returns the index after the JSON value starting at doc[i].
func skipValue(doc []byte, i int) (int, bool) {
	if i >= len(doc) {
		return 0, false
	}
	switch doc[i] {
	case '"':
		return skipString(doc, i)
	case '{', '[':
		depth := 0
		for ; i < len(doc); i++ {
			switch doc[i] {
			case '"':
				e, ok := skipString(doc, i)
				if !ok {
					return 0, false
				}
				i = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	default: // number, true, false, null
		for i < len(doc) && doc[i] != ',' && doc[i] != '}' && doc[i] != ']' && doc[i] != ' ' && doc[i] != '\n' && doc[i] != '\t' && doc[i] != '\r' {
			i++
		}
		return i, true
	}
}
