package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Kind is the OpenAI API a request body belongs to; it decides which fields
// carry the prompt.
type Kind uint8

// The APIs the gateway routes.
const (
	KindChat Kind = iota + 1
	KindCompletion
	KindEmbeddings
	KindResponses
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
	// Prompt is the text prefix-cache affinity hashes: for chat, every
	// message as "role\ncontent\n" in order, so a conversation that extends
	// another has it as a byte prefix; for completions and embeddings the
	// (first) input; for responses the instructions and input.
	Prompt []byte

	// modelStart and modelEnd delimit the model value (with its quotes) in
	// the body, for rewriting by patching bytes.
	modelStart, modelEnd int
}

// requestError is a 400 naming the offending parameter.
func requestError(param, format string, args ...any) *Error {
	e := NewError(http.StatusBadRequest, ErrTypeInvalidRequest, fmt.Sprintf(format, args...))
	e.Param = param
	return e
}

// ParseRequest reads body as a request of kind. Malformed JSON, a body that
// is not an object, or fields of the wrong type are 400 errors (*Error).
// A missing model is not an error here: whether it is depends on the route.
func ParseRequest(kind Kind, body []byte) (*Parsed, error) {
	p := &Parsed{Kind: kind}
	var fields struct {
		Model         json.RawMessage `json:"model"`
		Stream        *bool           `json:"stream"`
		StreamOptions *StreamOptions  `json:"stream_options"`
		MaxTokens     *int            `json:"max_tokens"`
		MaxCompletion *int            `json:"max_completion_tokens"`
		MaxOutput     *int            `json:"max_output_tokens"`
		Messages      []ChatMessage   `json:"messages"`
		Prompt        *Prompt         `json:"prompt"`
		Input         json.RawMessage `json:"input"`
		Instructions  string          `json:"instructions"`
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, requestError(typeErr.Field, "%s: wrong type: expected %s", typeErr.Field, typeErr.Type)
		}
		return nil, requestError("", "the request body is not valid JSON: %v", err)
	}
	if len(fields.Model) > 0 {
		if !bytes.Equal(fields.Model, []byte("null")) {
			if err := json.Unmarshal(fields.Model, &p.Model); err != nil {
				return nil, requestError("model", "model must be a string")
			}
		}
		start, end, ok := topLevelValue(body, "model")
		if !ok {
			return nil, requestError("model", "model could not be located in the body")
		}
		p.modelStart, p.modelEnd = start, end
	}
	p.Stream = fields.Stream != nil && *fields.Stream
	p.IncludeUsage = fields.StreamOptions != nil && fields.StreamOptions.IncludeUsage
	for _, v := range []*int{fields.MaxCompletion, fields.MaxTokens, fields.MaxOutput} {
		if v != nil {
			if *v < 0 {
				return nil, requestError("max_tokens", "max_tokens must not be negative")
			}
			p.MaxTokens = *v
			break
		}
	}
	switch kind {
	case KindChat:
		for i := range fields.Messages {
			m := &fields.Messages[i]
			p.Prompt = append(p.Prompt, m.Role...)
			p.Prompt = append(p.Prompt, '\n')
			p.Prompt = append(p.Prompt, m.Content.Text...)
			p.Prompt = append(p.Prompt, '\n')
		}
	case KindCompletion:
		if fields.Prompt != nil {
			p.Prompt = appendPromptBytes(p.Prompt, fields.Prompt)
		}
	case KindEmbeddings, KindResponses:
		p.Prompt = append(p.Prompt, fields.Instructions...)
		if len(fields.Input) > 0 {
			var in MessageContent
			if json.Unmarshal(fields.Input, &in) == nil {
				p.Prompt = append(p.Prompt, in.Text...)
			} else {
				p.Prompt = append(p.Prompt, fields.Input...) // structured input: hash its JSON
			}
		}
	}
	return p, nil
}

func appendPromptBytes(dst []byte, pr *Prompt) []byte {
	if pr.Tokens == nil {
		return append(dst, pr.Text...)
	}
	for _, t := range pr.Tokens {
		dst = strconv.AppendUint(dst, uint64(t), 10)
		dst = append(dst, ' ')
	}
	return dst
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
func skipString(doc []byte, i int) (int, bool) {
	if i >= len(doc) || doc[i] != '"' {
		return 0, false
	}
	for i++; i < len(doc); i++ {
		switch doc[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
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
