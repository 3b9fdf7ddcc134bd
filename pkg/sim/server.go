package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/tokenizer"
)

// maxRequestBody bounds what one request may send; vLLM has no limit of its
// own, but a simulator that buffers a runaway body helps nobody.
const maxRequestBody = 64 << 20

// Server is one simulated model-server replica: an Engine behind vLLM's
// HTTP API.
type Server struct {
	cfg     Config
	engine  *Engine
	vocab   *vocab
	reg     *prometheus.Registry
	readyAt time.Time
	mux     *http.ServeMux
	ids     atomic.Uint64
	created int64

	kv *kvPublisher // nil unless --kv-events-config enables events
	// tok is the model's tokenizer (--tokenizer); nil: the built-in one.
	tok *tokenizer.Tokenizer

	mu       sync.Mutex
	adapters []string // loaded LoRA adapters, in load order
	failures *rand.Rand
	pieces   map[uint32]string // token id → text, for /detokenize
	// traceparents are the last maxTraceparents W3C traceparent headers
	// received, oldest first: a model server joins the gateway's trace
	// through them, and GET /debug/traceparents shows tests which arrived.
	traceparents []string
}

// maxTraceparents bounds the traceparents a replica remembers.
const maxTraceparents = 256

// NewServer builds replica number replica (0-based) of cfg. The engine does
// not run until Run is called.
func NewServer(cfg Config, replica int, v *vocab) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	m, attach := newMetrics(reg, cfg.Engine, cfg.ServedName())
	s := &Server{
		cfg:      cfg,
		engine:   NewEngine(cfg, m),
		vocab:    v,
		reg:      reg,
		readyAt:  time.Now().Add(time.Duration(float64(cfg.StartupDelay.Duration) / cfg.TimeScale)),
		created:  time.Now().Unix(),
		failures: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(replica)+1)),
		pieces:   map[uint32]string{tokIMStart: "<|im_start|>", tokIMEnd: "<|im_end|>"},
	}
	for i, w := range vocabulary {
		s.pieces[v.ids[i]] = w
	}
	for _, spec := range cfg.LoRAModules {
		name, _, _ := strings.Cut(spec, "=") // vLLM's name=path form
		s.adapters = append(s.adapters, name)
	}
	attach(s.engine)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	mux.HandleFunc("POST /v1/completions", s.handleCompletion)
	mux.HandleFunc("GET /v1/models", s.handleModels)
	mux.HandleFunc("GET /v1/models/{id...}", s.handleModel)
	mux.HandleFunc("POST /v1/embeddings", s.handleEmbeddings)
	mux.HandleFunc("POST /v1/responses", s.handleResponses)
	mux.HandleFunc("POST /v1/messages", s.handleMessages)
	mux.HandleFunc("POST /tokenize", s.handleTokenize)
	mux.HandleFunc("POST /detokenize", s.handleDetokenize)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /v1/load_lora_adapter", s.handleLoadLoRA)
	mux.HandleFunc("POST /v1/unload_lora_adapter", s.handleUnloadLoRA)
	mux.HandleFunc("POST /reset_prefix_cache", s.handleResetPrefixCache)
	mux.HandleFunc("GET /debug/kv-cache", s.handleKVCacheDump)
	mux.HandleFunc("GET /debug/traceparents", s.handleTraceparents)
	s.mux = mux
	return s, nil
}

// Engine exposes the replica's engine, for tests and the fleet's reports.
func (s *Server) Engine() *Engine { return s.engine }

// KVEventsAddr is the ZeroMQ address ("tcp://host:port") the replica
// publishes its KV-cache events on, "" when events are off.
func (s *Server) KVEventsAddr() string {
	if s.kv == nil {
		return ""
	}
	return s.kv.addr
}

// DropKVEventBatches makes the replica lose its next n event batches
// before they reach the socket, their sequence numbers spent: fault
// injection for tests of a subscriber's gap handling.
func (s *Server) DropKVEventBatches(n int) {
	if s.kv != nil {
		s.kv.dropNext.Add(int64(n))
	}
}

// attachKVEvents starts publishing the engine's KV-cache events; call
// before Run.
func (s *Server) attachKVEvents(p *kvPublisher) {
	s.kv = p
	s.engine.setEventSink(p.enqueue)
}

// handleResetPrefixCache is vLLM's POST /reset_prefix_cache: 200 when the
// cache was emptied, 409 while running sequences hold blocks.
func (s *Server) handleResetPrefixCache(w http.ResponseWriter, _ *http.Request) {
	if !s.engine.ResetPrefixCache() {
		writeError(w, &openai.Error{HTTPStatus: http.StatusConflict, Type: "BadRequestError", Message: "the prefix cache has blocks in use by running requests"})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// KVCacheDump is GET /debug/kv-cache: the replica's prefix-cache contents,
// for comparing a router's view with the truth.
type KVCacheDump struct {
	BlockSize int `json:"block_size"`
	// Blocks are the hashes of the cached blocks, sorted, as the replica's
	// KV-cache events name them.
	Blocks []uint64 `json:"blocks"`
}

func (s *Server) handleKVCacheDump(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, KVCacheDump{BlockSize: s.cfg.BlockSize, Blocks: s.engine.CachedBlockHashes()})
}

// Run drives the engine until ctx ends.
func (s *Server) Run(ctx context.Context) { s.engine.Run(ctx) }

// ServeHTTP routes to vLLM's endpoints, remembering the traceparent a
// request carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tp := r.Header.Get("Traceparent"); tp != "" && r.Method == http.MethodPost {
		s.mu.Lock()
		if len(s.traceparents) == maxTraceparents {
			s.traceparents = append(s.traceparents[:0], s.traceparents[1:]...)
		}
		s.traceparents = append(s.traceparents, tp)
		s.mu.Unlock()
	}
	s.mux.ServeHTTP(w, r)
}

// handleTraceparents answers the traceparents received, oldest first.
func (s *Server) handleTraceparents(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	tps := append([]string{}, s.traceparents...)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, tps)
}

func (s *Server) ready() bool { return !time.Now().Before(s.readyAt) }

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.models())
}

// models is the base model and every loaded adapter.
func (s *Server) models() openai.ModelList {
	base := s.cfg.ServedName()
	list := openai.ModelList{Object: openai.ObjectList}
	list.Data = append(list.Data, openai.Model{ID: base, Object: openai.ObjectModel, Created: s.created, OwnedBy: "vllm", Root: s.cfg.Model})
	s.mu.Lock()
	for _, a := range s.adapters {
		parent := base
		list.Data = append(list.Data, openai.Model{ID: a, Object: openai.ObjectModel, Created: s.created, OwnedBy: "vllm", Root: a, Parent: &parent})
	}
	s.mu.Unlock()
	return list
}

type loraRequest struct {
	Name string `json:"lora_name"`
	Path string `json:"lora_path"`
}

func (s *Server) handleLoadLoRA(w http.ResponseWriter, r *http.Request) {
	var req loraRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Name == "" {
		writeError(w, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "lora_name must be provided."))
		return
	}
	s.mu.Lock()
	if req.Name == s.cfg.ServedName() || slices.Contains(s.adapters, req.Name) {
		s.mu.Unlock()
		writeError(w, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("The lora adapter '%s' has already been loaded.", req.Name)))
		return
	}
	s.adapters = append(s.adapters, req.Name)
	s.mu.Unlock()
	writeText(w, http.StatusOK, fmt.Sprintf("Success: LoRA adapter '%s' added successfully.", req.Name))
}

func (s *Server) handleUnloadLoRA(w http.ResponseWriter, r *http.Request) {
	var req loraRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	s.mu.Lock()
	i := slices.Index(s.adapters, req.Name)
	if i < 0 {
		s.mu.Unlock()
		writeError(w, openai.NewError(http.StatusNotFound, openai.ErrTypeNotFound,
			fmt.Sprintf("The lora adapter '%s' cannot be found.", req.Name)))
		return
	}
	s.adapters = slices.Delete(s.adapters, i, i+1)
	s.mu.Unlock()
	writeText(w, http.StatusOK, fmt.Sprintf("Success: LoRA adapter '%s' removed successfully.", req.Name))
}

// resolveModel maps the requested model to the adapter to run ("" = base).
// vLLM serves its base model when the request names none.
func (s *Server) resolveModel(model string) (adapter string, e *openai.Error) {
	if model == "" || model == s.cfg.ServedName() {
		return "", nil
	}
	s.mu.Lock()
	loaded := slices.Contains(s.adapters, model)
	s.mu.Unlock()
	if !loaded {
		e := openai.NewError(http.StatusNotFound, openai.ErrTypeNotFound, fmt.Sprintf("The model `%s` does not exist.", model))
		e.Param = "model"
		return "", e
	}
	return model, nil
}

// precheck answers what every generation request faces first: startup and
// injected faults.
func (s *Server) precheck() *openai.Error {
	if !s.ready() {
		return openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable, "The server is starting up.")
	}
	if s.cfg.FailureRate > 0 {
		s.mu.Lock()
		fail := s.failures.Float64() < s.cfg.FailureRate
		s.mu.Unlock()
		if fail {
			return openai.NewError(s.cfg.FailureStatus, failureType(s.cfg.FailureStatus), "Simulated failure (failure-rate).")
		}
	}
	return nil
}

func failureType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return openai.ErrTypeRateLimit
	case status >= 500:
		return openai.ErrTypeServer
	default:
		return openai.ErrTypeInvalidRequest
	}
}

// generation is a parsed request ready for the engine, whatever its API.
type generation struct {
	model     string // as reported back to the client
	adapter   string
	prompt    []uint32
	limit     int
	ignoreEOS bool
	seed      *int64
	stream    bool
	usage     bool // stream_options.include_usage
	// instructions and maxOutput are echoed by the Responses API.
	instructions *string
	maxOutput    *int
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req openai.ChatCompletionRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, invalid("messages", "messages must be a non-empty array."))
		return
	}
	prompt, e := s.chatPrompt(req.Messages)
	if e != nil {
		writeError(w, e)
		return
	}
	g := generation{
		model:     req.Model,
		prompt:    prompt,
		limit:     req.OutputLimit(),
		ignoreEOS: req.IgnoreEOS,
		seed:      req.Seed,
		stream:    req.Stream,
		usage:     req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}
	s.generate(w, r, &g, apiChat)
}

// chatPrompt is a chat's prompt tokens: rendered by the model's chat
// template and tokenized by its tokenizer without added special tokens
// (as vLLM does) when --tokenizer is set, else by the built-in ones.
func (s *Server) chatPrompt(msgs []openai.ChatMessage) ([]uint32, *openai.Error) {
	if s.tok == nil {
		return appendChatPrompt(nil, msgs), nil
	}
	tm := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		tm[i] = tokenizer.Message{Role: m.Role, Content: m.Content.Text}
	}
	toks, err := s.tok.EncodeChat(tm)
	if err != nil {
		return nil, invalid("messages", err.Error())
	}
	return toks.IDs, nil
}

// textPrompt is a completion prompt's tokens, with the tokenizer's special
// tokens (BOS) when --tokenizer is set, as vLLM adds them.
func (s *Server) textPrompt(text string) ([]uint32, *openai.Error) {
	if s.tok == nil {
		return openai.AppendTokens(nil, text), nil
	}
	toks, err := s.tok.Encode(text, true)
	if err != nil {
		return nil, invalid("prompt", err.Error())
	}
	return toks.IDs, nil
}

func (s *Server) handleCompletion(w http.ResponseWriter, r *http.Request) {
	var req openai.CompletionRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	prompt := req.Prompt.Tokens
	if prompt == nil {
		var e *openai.Error
		if prompt, e = s.textPrompt(req.Prompt.Text); e != nil {
			writeError(w, e)
			return
		}
	}
	if len(prompt) == 0 {
		writeError(w, invalid("prompt", "The prompt must not be empty."))
		return
	}
	limit := 0
	if req.MaxTokens != nil {
		limit = *req.MaxTokens
	} else {
		limit = 16 // the OpenAI completions API default
	}
	g := generation{
		model:     req.Model,
		prompt:    prompt,
		limit:     limit,
		ignoreEOS: req.IgnoreEOS,
		seed:      req.Seed,
		stream:    req.Stream,
		usage:     req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}
	s.generate(w, r, &g, apiCompletion)
}

// api is the API a generation request came in on: it decides the shape of
// the answer and of errors.
type api uint8

const (
	apiChat api = iota
	apiCompletion
	apiResponses
	apiMessages
)

// fail writes e in the API's error shape: vLLM's for OpenAI's APIs,
// Anthropic's for the Messages API.
func fail(w http.ResponseWriter, a api, e *openai.Error) {
	if a != apiMessages {
		writeError(w, e)
		return
	}
	body := e.AnthropicJSON()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}

// generate runs g on the engine and writes the response in the shape of
// API a, streamed or not.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, g *generation, a api) {
	if e := s.precheck(); e != nil {
		fail(w, a, e)
		return
	}
	adapter, e := s.resolveModel(g.model)
	if e != nil {
		fail(w, a, e)
		return
	}
	g.adapter = adapter
	if g.model == "" {
		g.model = s.cfg.ServedName()
	}
	if g.limit < 0 {
		fail(w, a, invalid("max_tokens", "max_tokens must be at least 1, got "+strconv.Itoa(g.limit)+"."))
		return
	}
	maxLen := s.cfg.MaxModelLen
	if len(g.prompt) >= maxLen || len(g.prompt)+g.limit > maxLen {
		fail(w, a, invalid("messages", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			maxLen, len(g.prompt)+g.limit, len(g.prompt), g.limit)))
		return
	}
	plan := planOutput(s.cfg.Seed, g.seed, adapter, g.prompt, g.limit, maxLen-len(g.prompt), g.ignoreEOS, s.cfg.Perf.MeanOutputTokens)
	seq, err := s.engine.Submit(Request{Prompt: g.prompt, Output: plan.tokens(s.vocab), Adapter: adapter, FinishReason: plan.finish})
	if err != nil {
		if errors.Is(err, ErrEngineStopped) {
			fail(w, a, openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable, "The server is shutting down."))
			return
		}
		if errors.Is(err, ErrKVCacheFull) {
			fail(w, a, openai.NewError(s.cfg.KVFullStatus, failureType(s.cfg.KVFullStatus), "No KV cache blocks are free for this request (kv-full-status)."))
			return
		}
		fail(w, a, invalid("messages", err.Error()))
		return
	}
	id := s.requestID(a)
	if g.stream {
		s.stream(w, r, g, seq, plan, id, a)
		return
	}
	select {
	case <-seq.Done():
	case <-r.Context().Done():
		s.engine.Abort(seq)
		return
	}
	if seq.Err() != nil {
		fail(w, a, openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable, seq.Err().Error()))
		return
	}
	usage := usageOf(seq)
	created := time.Now().Unix()
	text := plan.text(seq.OutputTokens())
	switch a {
	case apiChat:
		writeJSON(w, http.StatusOK, openai.ChatCompletion{
			ID: id, Object: openai.ObjectChatCompletion, Created: created, Model: g.model,
			Choices: []openai.ChatChoice{{Message: openai.ChatMessage{Role: "assistant", Content: openai.MessageContent{Text: text}}, FinishReason: plan.finish}},
			Usage:   usage,
		})
	case apiCompletion:
		finish := plan.finish
		writeJSON(w, http.StatusOK, openai.Completion{
			ID: id, Object: openai.ObjectTextCompletion, Created: created, Model: g.model,
			Choices: []openai.CompletionChoice{{Text: text, FinishReason: &finish}},
			Usage:   usage,
		})
	case apiResponses:
		writeJSON(w, http.StatusOK, responseObject(id, created, g, plan.finish, text, usage))
	case apiMessages:
		writeJSON(w, http.StatusOK, messageObject(id, g.model, plan.finish, text, usage))
	}
}

// streamFormat renders one API's stream: the events before the first
// token, one or more events per token, and the events after the last.
type streamFormat interface {
	start(dst []byte) []byte
	token(dst []byte, word uint16, finish string) []byte
	end(dst []byte, seq *Sequence, text string) []byte
}

// stream writes the SSE response as the API's server does (vLLM for chat
// and completions, OpenAI's Responses API events, Anthropic's Messages
// events). Tokens that pile up while the client is slow are written
// together and flushed once.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, g *generation, seq *Sequence, plan outputPlan, id string, a api) {
	created := time.Now().Unix()
	var f streamFormat
	switch a {
	case apiChat, apiCompletion:
		f = &openAIStream{chunks: newChunkEncoder(id, created, g.model, a == apiChat, s.vocab), id: id, created: created, g: g, chat: a == apiChat}
	case apiResponses:
		f = &responsesStream{id: id, created: created, g: g, finish: plan.finish}
	case apiMessages:
		f = &messagesStream{id: id, g: g, finish: plan.finish, input: seq.PromptTokens(), vocab: s.vocab}
	}
	sse := openai.NewSSEWriter(w)
	write := func(b []byte) bool {
		if len(b) == 0 {
			return true
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		sse.Flush()
		return true
	}
	if !write(f.start(nil)) {
		s.engine.Abort(seq)
		return
	}
	sent := 0
	var buf []byte
	for {
		var finished bool
		select {
		case <-seq.Notify():
		case <-seq.Done():
			finished = true
		case <-r.Context().Done():
			s.engine.Abort(seq)
			return
		}
		if finished && seq.Err() != nil {
			return // the engine stopped; end the stream without its end events
		}
		n := seq.Generated()
		buf = buf[:0]
		for ; sent < n; sent++ {
			finish := ""
			if sent == seq.OutputTokens()-1 {
				finish = plan.finish
			}
			buf = f.token(buf, plan.words[sent], finish)
		}
		if !write(buf) {
			s.engine.Abort(seq)
			return
		}
		if finished {
			break
		}
	}
	write(f.end(nil, seq, plan.text(seq.Generated())))
}

// openAIStream is vLLM's stream of chat and completion chunks: for chat a
// first chunk with the assistant role, one chunk per token (the last
// carrying the finish reason), a usage chunk with no choices when
// stream_options.include_usage is set, and [DONE].
type openAIStream struct {
	chunks  *chunkEncoder
	id      string
	created int64
	g       *generation
	chat    bool
}

func (o *openAIStream) start(dst []byte) []byte {
	if !o.chat {
		return dst
	}
	empty := ""
	return appendData(dst, openai.ChatCompletionChunk{ID: o.id, Object: openai.ObjectChatCompletionChunk, Created: o.created, Model: o.g.model,
		Choices: []openai.ChatChunkChoice{{Delta: openai.ChatDelta{Role: "assistant", Content: &empty}}}})
}

func (o *openAIStream) token(dst []byte, word uint16, finish string) []byte {
	return o.chunks.appendToken(dst, word, finish)
}

func (o *openAIStream) end(dst []byte, seq *Sequence, _ string) []byte {
	if o.g.usage {
		if o.chat {
			dst = appendData(dst, openai.ChatCompletionChunk{ID: o.id, Object: openai.ObjectChatCompletionChunk, Created: o.created, Model: o.g.model,
				Choices: []openai.ChatChunkChoice{}, Usage: usageOf(seq)})
		} else {
			dst = appendData(dst, openai.Completion{ID: o.id, Object: openai.ObjectTextCompletion, Created: o.created, Model: o.g.model,
				Choices: []openai.CompletionChoice{}, Usage: usageOf(seq)})
		}
	}
	return append(dst, "data: "+openai.SSEDone+"\n\n"...)
}

// appendData appends v as one `data:` event.
func appendData(dst []byte, v any) []byte {
	b, _ := json.Marshal(v)
	dst = append(dst, "data: "...)
	dst = append(dst, b...)
	return append(dst, '\n', '\n')
}

// appendEvent appends v as one event named name (`event:` and `data:`
// lines), the framing of the Responses and Messages APIs.
func appendEvent(dst []byte, name string, v any) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, name...)
	dst = append(dst, '\n')
	return appendData(dst, v)
}

func usageOf(seq *Sequence) *openai.Usage {
	p, c := seq.PromptTokens(), seq.Generated()
	return &openai.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c,
		PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: seq.CachedTokens()}}
}

func (s *Server) requestID(a api) string {
	prefix := "cmpl-"
	switch a {
	case apiChat:
		prefix = "chatcmpl-"
	case apiResponses:
		prefix = "resp_"
	case apiMessages:
		prefix = "msg_"
	}
	return prefix + strconv.FormatUint(uint64(s.cfg.Port), 16) + "-" + strconv.FormatUint(s.ids.Add(1), 16)
}

func invalid(param, msg string) *openai.Error {
	e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, msg)
	e.Param = param
	return e
}

// decodeBody reads a bounded JSON body into v, answering what vLLM answers
// for malformed input.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *openai.Error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest, "Request body too large.")
		}
		return openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "Could not read the request body.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "Invalid JSON body: "+err.Error())
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, openai.NewError(http.StatusInternalServerError, openai.ErrTypeServer, err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

// writeError sends e in vLLM's error shape: OpenAI's envelope with the
// HTTP status as a numeric "code" and vLLM's type names, which a gateway
// in front passes through unchanged.
func writeError(w http.ResponseWriter, e *openai.Error) {
	body, _ := json.Marshal(struct {
		Error vllmError `json:"error"`
	}{vllmError{Message: e.Message, Type: e.Type, Param: e.Param, Code: e.Status()}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}

// vllmError is the error object vLLM sends.
type vllmError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
	Code    int    `json:"code"`
}
