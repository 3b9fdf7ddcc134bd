package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Client sends benchmark requests to one OpenAI-compatible target (a
// gateway or a model server) and measures them. One Client with one
// connection pool serves a whole run, so connection reuse is the same for
// every contender of a comparison.
type Client struct {
	base    string
	headers http.Header
	http    *http.Client
	owned   *http.Transport // closed by Close when NewClient built it
}

// ClientOptions adjust a Client. The zero value is a sensible default.
type ClientOptions struct {
	// Headers are sent with every request (e.g. Authorization).
	Headers http.Header
	// HTTPClient replaces the default client built on NewTransport, for
	// tests and custom transports.
	HTTPClient *http.Client
}

// NewClient returns a client for target, a base URL such as
// http://127.0.0.1:8080 (a path prefix, if any, is kept: requests go to
// target + "/v1/chat/completions").
func NewClient(target string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("bench: target %q: %w", target, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bench: target %q: want an http or https URL with a host", target)
	}
	c := &Client{base: strings.TrimRight(target, "/"), headers: o.Headers.Clone(), http: o.HTTPClient}
	if c.http == nil {
		c.owned = NewTransport()
		c.http = &http.Client{Transport: c.owned}
	}
	return c, nil
}

// NewTransport is the transport a benchmark needs: a deep idle pool (every
// concurrent stream keeps its connection for the next request instead of
// reconnecting), no connection cap, no transparent compression (token
// streams must arrive as sent and uncompressed, like a model server's own
// clients see them) and HTTP/1.1, which is what OpenAI clients and model
// servers speak.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          0, // no overall limit
		MaxIdleConnsPerHost:   16384,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		ExpectContinueTimeout: 0,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
	}
}

// Close releases idle connections of a transport the client built.
func (c *Client) Close() {
	if c.owned != nil {
		c.owned.CloseIdleConnections()
	}
}

// errRequestTimeout is the cancellation cause of a request that ran past
// its timeout, telling ErrTimeout apart from ErrCanceled.
var errRequestTimeout = errors.New("request timeout")

// completionBody is the body of POST /v1/completions. openai.Prompt only
// decodes, so the load generator writes its own shape.
type completionBody struct {
	Model         string                `json:"model,omitempty"`
	Prompt        string                `json:"prompt"`
	Stream        bool                  `json:"stream"`
	StreamOptions *openai.StreamOptions `json:"stream_options,omitempty"`
	MaxTokens     *int                  `json:"max_tokens,omitempty"`
	IgnoreEOS     bool                  `json:"ignore_eos,omitempty"`
}

// body encodes req and returns it with its API path.
func encodeRequest(req *Request) (path string, body []byte, err error) {
	maxTokens := req.MaxTokens
	opts := &openai.StreamOptions{IncludeUsage: true}
	if len(req.Messages) > 0 {
		body, err = json.Marshal(openai.ChatCompletionRequest{
			Model: req.Model, Messages: req.Messages, Stream: true, StreamOptions: opts,
			MaxTokens: &maxTokens, IgnoreEOS: true,
		})
		return "/v1/chat/completions", body, err
	}
	body, err = json.Marshal(completionBody{
		Model: req.Model, Prompt: req.Prompt, Stream: true, StreamOptions: opts,
		MaxTokens: &maxTokens, IgnoreEOS: true,
	})
	return "/v1/completions", body, err
}

// Send sends req, reads its stream to the end and returns the measurements,
// with Start and End as offsets from epoch, and the generated text if
// req.CollectAnswer is set. Failures are reported in the result, never as a
// Go error: a benchmark counts them. Cancelling ctx ends the request with
// ErrCanceled.
func (c *Client) Send(ctx context.Context, req *Request, epoch time.Time) (RequestResult, string) {
	res := RequestResult{
		Group: req.Group, Turn: req.Turn, Model: req.Model,
		Objective: req.Objective, FairnessID: req.FairnessID, SLOTTFTMs: int(req.TTFTObjective.Milliseconds()),
	}
	path, body, err := encodeRequest(req)
	if err != nil {
		res.ErrorKind, res.Error = ErrTransport, fmt.Sprintf("encode request: %v", err)
		res.TransportError = "other"
		return res, ""
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		res.ErrorKind, res.Error, res.TransportError = ErrTransport, err.Error(), "other"
		return res, ""
	}
	for k, v := range c.headers {
		hr.Header[k] = v
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "text/event-stream")
	if req.Objective != "" {
		hr.Header.Set(HeaderObjective, req.Objective)
	}
	if req.FairnessID != "" {
		hr.Header.Set(HeaderFairnessID, req.FairnessID)
	}
	if req.TTFTObjective > 0 {
		hr.Header.Set(HeaderSLOTTFT, strconv.FormatInt(req.TTFTObjective.Milliseconds(), 10))
	}
	if req.TPOTObjective > 0 {
		hr.Header.Set(HeaderSLOTPOT, strconv.FormatInt(req.TPOTObjective.Milliseconds(), 10))
	}

	start := time.Now()
	res.Start = start.Sub(epoch)
	resp, err := c.http.Do(hr)
	if err != nil {
		end := time.Now()
		res.End, res.E2E = end.Sub(epoch), end.Sub(start)
		c.fail(ctx, &res, ErrTransport, err)
		return res, ""
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	res.Endpoint = resp.Header.Get(HeaderEndpointServed)

	var answer string
	if resp.StatusCode != http.StatusOK {
		res.ErrorKind, res.Error = ErrHTTP, errorMessage(resp)
	} else {
		answer = c.readBody(ctx, resp, start, req.CollectAnswer, &res)
	}
	end := time.Now()
	res.End, res.E2E = end.Sub(epoch), end.Sub(start)
	if res.Endpoint == "" {
		res.Endpoint = resp.Trailer.Get(HeaderEndpointServed)
	}
	if res.OK() {
		finishTimes(&res)
	}
	return res, answer
}

// readBody reads a 200 response: an SSE stream, or (from a server that
// ignored stream: true) one JSON document.
func (c *Client) readBody(ctx context.Context, resp *http.Response, start time.Time, collect bool, res *RequestResult) string {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/json" {
		return readJSONBody(ctx, c, resp, start, res)
	}
	p := streamParser{collect: collect, start: start}
	if err := p.read(resp.Body); err != nil {
		c.fail(ctx, res, ErrStream, err)
	} else if p.errMsg != "" {
		res.ErrorKind, res.Error = ErrStream, p.errMsg
	} else if !p.done {
		res.ErrorKind, res.Error = ErrStream, "stream ended without [DONE]"
	}
	p.fill(res)
	return p.answer.String()
}

// readJSONBody accounts a non-streamed response: the whole answer is the
// first token.
func readJSONBody(ctx context.Context, c *Client, resp *http.Response, start time.Time, res *RequestResult) string {
	var doc struct {
		Choices []struct {
			Message openai.ChatMessage `json:"message"`
			Text    string             `json:"text"`
		} `json:"choices"`
		Usage *openai.Usage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		c.fail(ctx, res, ErrStream, err)
		return ""
	}
	res.TTFT = time.Since(start)
	var answer string
	if len(doc.Choices) > 0 {
		answer = doc.Choices[0].Message.Content.Text + doc.Choices[0].Text
	}
	if doc.Usage != nil {
		setUsage(res, doc.Usage)
	} else if answer != "" {
		res.OutputTokens = 1
	}
	return answer
}

// fail records err as kind, unless it came from the context, in which case
// the context says whether it was a timeout or a cancellation.
func (c *Client) fail(ctx context.Context, res *RequestResult, kind ErrorKind, err error) {
	res.Error = err.Error()
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errRequestTimeout) {
			res.ErrorKind = ErrTimeout
		} else {
			res.ErrorKind = ErrCanceled
		}
		return
	}
	res.ErrorKind = kind
	if kind == ErrTransport {
		res.TransportError = classifyTransport(err)
	}
}

// classifyTransport names the common ways a connection fails, so an error
// table says "refused" (nothing listening) apart from "reset" (a crash or
// an overloaded accept queue).
func classifyTransport(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return "other"
}

// errorMessage reads an OpenAI-style error body (bounded) for the result.
func errorMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = resp.Status
	}
	return msg
}

// finishTimes derives TPOT and NTPOT once token counts are known.
func finishTimes(res *RequestResult) {
	if res.OutputTokens > 1 {
		res.TPOT = (res.E2E - res.TTFT) / time.Duration(res.OutputTokens-1)
	}
	if res.OutputTokens > 0 {
		res.NTPOT = res.E2E / time.Duration(res.OutputTokens)
	}
}

func setUsage(res *RequestResult, u *openai.Usage) {
	res.InputTokens, res.OutputTokens = u.PromptTokens, u.CompletionTokens
	if u.PromptTokensDetails != nil {
		res.CachedTokens = u.PromptTokensDetails.CachedTokens
	}
	res.UsageReported = true
}

// streamParser follows one SSE stream. Token events are classified by a
// byte scan, not decoded: per-token JSON decoding would make the load
// generator, not the target, the bottleneck on a small machine. Only rare
// events (usage, errors) and, when an answer is collected, token events are
// decoded.
type streamParser struct {
	collect bool
	start   time.Time

	first     time.Time
	last      time.Time
	itl       []time.Duration
	events    int
	usage     openai.Usage
	haveUsage bool
	done      bool
	errMsg    string
	answer    strings.Builder
}

var (
	keyContent = []byte(`"content":`)
	keyText    = []byte(`"text":`)
	keyUsage   = []byte(`"usage":`)
	keyError   = []byte(`"error":`)
)

// read follows the stream until [DONE], an error event or its end. Each
// event is timed when the reader has it whole.
func (p *streamParser) read(body io.Reader) error {
	r := openai.NewSSEReader(body)
	for {
		data, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p.event(data, time.Now())
		if p.done || p.errMsg != "" {
			return nil
		}
	}
}

// event accounts one event's data, received at now.
func (p *streamParser) event(data []byte, now time.Time) {
	if string(data) == openai.SSEDone {
		p.done = true
		return
	}
	if hasNonEmptyString(data, keyContent) || hasNonEmptyString(data, keyText) {
		if p.events == 0 {
			p.first = now
		} else {
			p.itl = append(p.itl, now.Sub(p.last))
		}
		p.last = now
		p.events++
		if p.collect {
			p.appendAnswer(data)
		}
	}
	if hasObject(data, keyUsage) {
		var ev struct {
			Usage *openai.Usage `json:"usage"`
		}
		if json.Unmarshal(data, &ev) == nil && ev.Usage != nil {
			p.usage, p.haveUsage = *ev.Usage, true
		}
	}
	if p.events == 0 && hasObject(data, keyError) {
		var ev struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &ev) == nil && ev.Error != nil {
			p.errMsg = "error event: " + ev.Error.Message
			if ev.Error.Message == "" {
				p.errMsg = "error event"
			}
		}
	}
}

// appendAnswer appends the event's generated text: the string after its
// "content" (chat) or "text" (completions) key, copied as is unless it has
// escapes, which the JSON decoder then resolves.
func (p *streamParser) appendAnswer(data []byte) {
	lit := stringValue(data, keyContent)
	if lit == nil {
		lit = stringValue(data, keyText)
	}
	if lit == nil {
		return
	}
	if bytes.IndexByte(lit, '\\') < 0 {
		p.answer.Write(lit[1 : len(lit)-1])
		return
	}
	var s string
	if json.Unmarshal(lit, &s) == nil {
		p.answer.WriteString(s)
	}
}

// stringValue returns the quoted string literal (quotes included) that
// follows key in data, or nil.
func stringValue(data, key []byte) []byte {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil
	}
	j := skipSpace(data, i+len(key))
	if j >= len(data) || data[j] != '"' {
		return nil
	}
	for k := j + 1; k < len(data); k++ {
		switch data[k] {
		case '\\':
			k++ // skip the escaped byte
		case '"':
			return data[j : k+1]
		}
	}
	return nil
}

// fill copies what the stream showed into res.
func (p *streamParser) fill(res *RequestResult) {
	if p.events > 0 {
		res.TTFT = p.first.Sub(p.start)
	}
	res.ITL = p.itl
	if p.haveUsage {
		setUsage(res, &p.usage)
	} else {
		res.OutputTokens = p.events
	}
}

// hasNonEmptyString reports whether data has key (a quoted JSON key and its
// colon) followed by a non-empty string. A quoted key followed by a colon
// cannot occur inside a JSON string (its quotes would be escaped), so the
// scan cannot be fooled by generated text.
func hasNonEmptyString(data, key []byte) bool {
	i := bytes.Index(data, key)
	if i < 0 {
		return false
	}
	j := skipSpace(data, i+len(key))
	return j+1 < len(data) && data[j] == '"' && data[j+1] != '"'
}

// hasObject reports whether data has key followed by an object.
func hasObject(data, key []byte) bool {
	i := bytes.Index(data, key)
	if i < 0 {
		return false
	}
	j := skipSpace(data, i+len(key))
	return j < len(data) && data[j] == '{'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
