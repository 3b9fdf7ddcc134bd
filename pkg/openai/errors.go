package openai

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types used in the "type" field of an error body. Clients branch on
// these, so the gateway's own errors keep OpenAI's spelling for the same
// condition (docs/errors.md has the table).
const (
	// ErrTypeInvalidRequest is OpenAI's type for every client error: bad
	// JSON, a missing or unknown model, a bad credential, a body too large.
	ErrTypeInvalidRequest = "invalid_request_error"
	// ErrTypeNotFound is vLLM's type for an unknown model; igw sim answers
	// with it as vLLM does. The gateway itself answers OpenAI's
	// invalid_request_error with code model_not_found (ModelNotFound).
	ErrTypeNotFound = "NotFoundError"
	// ErrTypeRateLimit is OpenAI's type of a 429 rate limit ("requests":
	// OpenAI names the limit that was reached; igw's admission and quotas
	// limit requests).
	ErrTypeRateLimit = "requests"
	// ErrTypeUnavailable and ErrTypeServer are OpenAI's type for the
	// server side failing or being overloaded (5xx): OpenAI uses one type,
	// server_error, for both.
	ErrTypeUnavailable = "server_error"
	ErrTypeServer      = "server_error"
)

// Machine-readable codes in the "code" field, as OpenAI names the same
// conditions; code that reads error.code depends on these strings.
const (
	CodeModelNotFound         = "model_not_found"
	CodeInvalidAPIKey         = "invalid_api_key"
	CodeRateLimitExceeded     = "rate_limit_exceeded"
	CodeContextLengthExceeded = "context_length_exceeded"
)

// Error is the body of an OpenAI-style error. It is also a Go error, so a
// handler can return one and have the transport render it with its status.
type Error struct {
	Message string
	Type    string
	// Param names the request field at fault ("" renders null).
	Param string
	// Code is OpenAI's machine-readable string code ("" renders null).
	Code string
	// HTTPStatus is the status the error is sent with. It is not part of
	// OpenAI's body (vLLM's numeric "code" is read into it).
	HTTPStatus int
}

// ErrorResponse wraps Error the way OpenAI's API does: {"error": {...}}.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// errorWire is the JSON shape of Error: param and code are null when
// absent, as OpenAI sends them.
type errorWire struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Param   *string         `json:"param"`
	Code    json.RawMessage `json:"code"`
}

// MarshalJSON renders OpenAI's error object.
func (e Error) MarshalJSON() ([]byte, error) {
	w := errorWire{Message: e.Message, Type: e.Type, Code: json.RawMessage("null")}
	if e.Param != "" {
		w.Param = &e.Param
	}
	if e.Code != "" {
		c, _ := json.Marshal(e.Code)
		w.Code = c
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads OpenAI's error object, and vLLM's, whose numeric
// code is the HTTP status.
func (e *Error) UnmarshalJSON(b []byte) error {
	var w errorWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Error{Message: w.Message, Type: w.Type}
	if w.Param != nil {
		e.Param = *w.Param
	}
	code := bytes.TrimSpace(w.Code)
	switch {
	case len(code) > 0 && code[0] == '"':
		return json.Unmarshal(code, &e.Code)
	case len(code) > 0 && code[0] != 'n':
		n, err := strconv.Atoi(string(code))
		if err == nil {
			e.HTTPStatus = n
		}
	}
	return nil
}

func (e *Error) Error() string { return e.Message }

// NewError builds an Error sent with status. A 401 carries OpenAI's code
// invalid_api_key and a 429 rate_limit_exceeded, as OpenAI's do; other
// codes are set by the caller that knows the condition.
func NewError(status int, typ, message string) *Error {
	e := &Error{Message: message, Type: typ, HTTPStatus: status}
	switch status {
	case http.StatusUnauthorized:
		e.Code = CodeInvalidAPIKey
	case http.StatusTooManyRequests:
		e.Code = CodeRateLimitExceeded
	}
	return e
}

// TypeForStatus is OpenAI's error type for an error status when nothing
// more is known of the condition: server_error for 5xx, the rate-limit
// type for 429, invalid_request_error for other client errors.
func TypeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return ErrTypeRateLimit
	case status >= 500:
		return ErrTypeServer
	}
	return ErrTypeInvalidRequest
}

// ModelNotFound is the error for a model nothing serves: 404 with OpenAI's
// type, code and message for the same condition.
func ModelNotFound(model string) *Error {
	e := NewError(http.StatusNotFound, ErrTypeInvalidRequest,
		"The model `"+Echo(model)+"` does not exist or you do not have access to it.")
	e.Param, e.Code = "model", CodeModelNotFound
	return e
}

// Status is the HTTP status the error is sent with.
func (e *Error) Status() int {
	if e.HTTPStatus < 400 || e.HTTPStatus > 599 {
		return http.StatusInternalServerError
	}
	return e.HTTPStatus
}

// JSON renders the error body in OpenAI's shape.
func (e *Error) JSON() []byte {
	b, err := json.Marshal(ErrorResponse{Error: *e})
	if err != nil { // cannot happen: the struct holds only strings
		return []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	return b
}

// Body renders the error in the shape of the API kind: Anthropic's for the
// Messages API, OpenAI's otherwise.
func (e *Error) Body(kind Kind) []byte {
	if kind == KindMessages {
		return e.AnthropicJSON()
	}
	return e.JSON()
}

// AnthropicType is the Anthropic Messages API's error type for the
// error's status, which Anthropic's SDKs and clients branch on.
func (e *Error) AnthropicType() string {
	switch s := e.Status(); {
	case s == http.StatusUnauthorized:
		return "authentication_error"
	case s == http.StatusForbidden:
		return "permission_error"
	case s == http.StatusNotFound:
		return "not_found_error"
	case s == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case s == http.StatusTooManyRequests:
		return "rate_limit_error"
	case s == http.StatusServiceUnavailable || s == 529:
		return "overloaded_error"
	case s >= 500:
		return "api_error"
	default:
		return "invalid_request_error"
	}
}

// AnthropicJSON renders the error in the Anthropic Messages API's shape:
// {"type":"error","error":{"type":...,"message":...}}.
func (e *Error) AnthropicJSON() []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}{Type: "error", Error: struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{e.AnthropicType(), e.Message}})
	return b
}

// ParseErrorBody reads an error body in OpenAI's, vLLM's or Anthropic's
// shape; ok is false for anything else.
func ParseErrorBody(body []byte) (e *Error, ok bool) {
	var w struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &w) != nil || len(w.Error) == 0 || w.Error[0] != '{' {
		return nil, false
	}
	e = &Error{}
	if json.Unmarshal(w.Error, e) != nil {
		return nil, false
	}
	return e, true
}

// WriteError sends e as an OpenAI-style JSON error with its status.
func WriteError(w http.ResponseWriter, e *Error) {
	body := e.JSON()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}

// maxEcho bounds a client's value quoted in an error message.
const maxEcho = 256

// Echo is a client's value as an error message may quote it: at most 256
// bytes (cut on a UTF-8 boundary, with the full length noted), so a 9 MiB
// model name or header does not come back as a 9 MiB error.
func Echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
