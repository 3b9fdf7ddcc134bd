package openai

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types used in the "type" field of an error body. Clients (the
// official OpenAI SDKs among them) branch on these, so they keep OpenAI's
// spelling.
const (
	ErrTypeInvalidRequest = "invalid_request_error"
	ErrTypeNotFound       = "NotFoundError"
	ErrTypeRateLimit      = "rate_limit_error"
	ErrTypeUnavailable    = "service_unavailable"
	ErrTypeServer         = "server_error"
)

// Error is the body of an OpenAI-style error. It is also a Go error, so a
// handler can return one and have the transport render it with its status.
type Error struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
	// Code mirrors the HTTP status, as vLLM does, so a client that only sees
	// the body still knows what happened.
	Code int `json:"code"`
}

// ErrorResponse wraps Error the way OpenAI's API does: {"error": {...}}.
type ErrorResponse struct {
	Error Error `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// NewError builds an Error whose Code is the HTTP status it must be sent with.
func NewError(status int, typ, message string) *Error {
	return &Error{Message: message, Type: typ, Code: status}
}

// Status is the HTTP status the error is sent with.
func (e *Error) Status() int {
	if e.Code < 400 || e.Code > 599 {
		return http.StatusInternalServerError
	}
	return e.Code
}

// JSON renders the error body.
func (e *Error) JSON() []byte {
	b, err := json.Marshal(ErrorResponse{Error: *e})
	if err != nil { // cannot happen: the struct holds only strings and ints
		return []byte(`{"error":{"message":"internal error","type":"server_error","code":500}}`)
	}
	return b
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
