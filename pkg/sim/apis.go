package sim

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/igw-dev/igw/pkg/openai"
)

// The APIs besides chat and completions: embeddings, OpenAI's Responses
// API, Anthropic's Messages API (vLLM serves it too), vLLM's /tokenize and
// /detokenize, and GET /v1/models/{id}.

// embeddingDims is the length of the simulator's embedding vectors; a
// request's "dimensions" may ask for fewer (the vector's first components,
// renormalized, as Matryoshka embeddings do).
const embeddingDims = 1024

// maxPieces bounds the token texts a replica remembers for /detokenize.
const maxPieces = 1 << 16

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req openai.EmbeddingRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.precheck(); e != nil {
		writeError(w, e)
		return
	}
	if _, e := s.resolveModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	dims := embeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > embeddingDims {
			writeError(w, invalid("dimensions", fmt.Sprintf("dimensions must be between 1 and %d.", embeddingDims)))
			return
		}
		dims = *req.Dimensions
	}
	b64 := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		b64 = true
	default:
		writeError(w, invalid("encoding_format", "encoding_format must be float or base64."))
		return
	}
	if req.Input.Len() == 0 {
		writeError(w, invalid("input", "input must not be empty."))
		return
	}
	inputs := req.Input.Tokens
	for _, t := range req.Input.Texts {
		inputs = append(inputs, openai.AppendTokens(nil, t))
	}
	model := req.Model
	if model == "" {
		model = s.cfg.ServedName()
	}
	out := openai.EmbeddingList{Object: openai.ObjectList, Model: model, Data: make([]openai.Embedding, 0, len(inputs))}
	for i, tokens := range inputs {
		if len(tokens) > s.cfg.MaxModelLen {
			writeError(w, invalid("input", fmt.Sprintf("This model's maximum context length is %d tokens. However, input %d has %d tokens.", s.cfg.MaxModelLen, i, len(tokens))))
			return
		}
		v := embed(model, tokens, dims)
		var value any = v
		if b64 {
			raw := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			value = base64.StdEncoding.EncodeToString(raw)
		}
		out.Data = append(out.Data, openai.Embedding{Object: openai.ObjectEmbedding, Index: i, Embedding: value})
		out.Usage.PromptTokens += len(tokens)
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	writeJSON(w, http.StatusOK, out)
}

// embed is the deterministic unit vector of tokens: the same input gives
// the same vector on every replica and run; dims takes the first
// components of the full vector, renormalized.
func embed(model string, tokens []uint32, dims int) []float32 {
	var h xxhash.Digest
	h.Reset()
	_, _ = h.WriteString(model)
	var buf [4]byte
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(buf[:], t)
		_, _ = h.Write(buf[:])
	}
	rng := rand.New(rand.NewPCG(h.Sum64(), 0xE3BE))
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	var req openai.ResponseRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	msgs := req.Input.Messages
	if req.Instructions != nil {
		msgs = append([]openai.ChatMessage{{Role: "system", Content: openai.MessageContent{Text: *req.Instructions}}}, msgs...)
	}
	if len(req.Input.Messages) == 0 {
		writeError(w, invalid("input", "input must be a non-empty string or array of messages."))
		return
	}
	g := generation{
		model:        req.Model,
		prompt:       appendChatPrompt(nil, msgs),
		ignoreEOS:    req.IgnoreEOS,
		seed:         req.Seed,
		stream:       req.Stream,
		usage:        true,
		instructions: req.Instructions,
	}
	if req.MaxOutputTokens != nil {
		g.limit = *req.MaxOutputTokens
		g.maxOutput = req.MaxOutputTokens
	}
	s.generate(w, r, &g, apiResponses)
}

// responseUsage is a Sequence's usage with the Responses API's names.
func responseUsage(u *openai.Usage) *openai.ResponseUsage {
	return &openai.ResponseUsage{InputTokens: u.PromptTokens, InputTokensDetails: *u.PromptTokensDetails,
		OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// responseObject is the Responses API's response; text "" and usage nil
// for the in-progress object of a stream's first events.
func responseObject(id string, created int64, g *generation, finish, text string, usage *openai.Usage) openai.Response {
	resp := openai.Response{ID: id, Object: openai.ObjectResponse, CreatedAt: created, Status: "in_progress", Model: g.model,
		Output: []openai.OutputMessage{}, Instructions: g.instructions, MaxOutputTokens: g.maxOutput}
	if usage == nil {
		return resp
	}
	resp.Status = "completed"
	if finish == openai.FinishLength {
		resp.Status = "incomplete"
		resp.IncompleteDetails = &openai.IncompleteDetails{Reason: "max_output_tokens"}
	}
	resp.Output = []openai.OutputMessage{outputMessage(id, "completed", text)}
	resp.Usage = responseUsage(usage)
	return resp
}

func outputMessage(respID, status, text string) openai.OutputMessage {
	m := openai.OutputMessage{Type: "message", ID: "msg_" + strings.TrimPrefix(respID, "resp_"), Status: status, Role: "assistant", Content: []openai.OutputText{}}
	if status == "completed" {
		m.Content = append(m.Content, openai.OutputText{Type: "output_text", Text: text, Annotations: []any{}})
	}
	return m
}

// responsesStream is the Responses API's stream: response.created and
// response.in_progress, the message item and its text part opened, one
// response.output_text.delta per token, everything closed again, and
// response.completed (response.incomplete at the token limit) with usage.
// Every event carries its sequence_number; there is no [DONE].
type responsesStream struct {
	id      string
	created int64
	g       *generation
	finish  string
	seq     int
}

func (o *responsesStream) event(dst []byte, typ string, fields map[string]any) []byte {
	fields["type"] = typ
	fields["sequence_number"] = o.seq
	o.seq++
	return appendEvent(dst, typ, fields)
}

func (o *responsesStream) part(text string) map[string]any {
	return map[string]any{"type": "output_text", "text": text, "annotations": []any{}}
}

func (o *responsesStream) start(dst []byte) []byte {
	resp := responseObject(o.id, o.created, o.g, "", "", nil)
	dst = o.event(dst, "response.created", map[string]any{"response": resp})
	dst = o.event(dst, "response.in_progress", map[string]any{"response": resp})
	item := outputMessage(o.id, "in_progress", "")
	dst = o.event(dst, "response.output_item.added", map[string]any{"output_index": 0, "item": item})
	return o.event(dst, "response.content_part.added", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "part": o.part("")})
}

func (o *responsesStream) token(dst []byte, word uint16, _ string) []byte {
	return o.event(dst, "response.output_text.delta", map[string]any{"item_id": outputMessage(o.id, "", "").ID,
		"output_index": 0, "content_index": 0, "delta": vocabulary[word], "logprobs": []any{}})
}

func (o *responsesStream) end(dst []byte, seq *Sequence, text string) []byte {
	item := outputMessage(o.id, "completed", text)
	dst = o.event(dst, "response.output_text.done", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "text": text, "logprobs": []any{}})
	dst = o.event(dst, "response.content_part.done", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "part": o.part(text)})
	dst = o.event(dst, "response.output_item.done", map[string]any{"output_index": 0, "item": item})
	resp := responseObject(o.id, o.created, o.g, o.finish, text, usageOf(seq))
	name := "response.completed"
	if resp.Status == "incomplete" {
		name = "response.incomplete"
	}
	return o.event(dst, name, map[string]any{"response": resp})
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	var req openai.MessagesRequest
	if e := decodeBody(w, r, &req); e != nil {
		fail(w, apiMessages, e)
		return
	}
	if req.MaxTokens == nil {
		fail(w, apiMessages, invalid("max_tokens", "max_tokens: Field required"))
		return
	}
	if len(req.Messages) == 0 {
		fail(w, apiMessages, invalid("messages", "messages: at least one message is required"))
		return
	}
	msgs := req.Messages
	if req.System.Text != "" {
		msgs = append([]openai.ChatMessage{{Role: "system", Content: req.System}}, msgs...)
	}
	g := generation{
		model:     req.Model,
		prompt:    appendChatPrompt(nil, msgs),
		limit:     *req.MaxTokens,
		ignoreEOS: req.IgnoreEOS,
		seed:      req.Seed,
		stream:    req.Stream,
		usage:     true,
	}
	s.generate(w, r, &g, apiMessages)
}

// stopReason is Anthropic's name for a finish reason.
func stopReason(finish string) *string {
	r := "end_turn"
	if finish == openai.FinishLength {
		r = "max_tokens"
	}
	return &r
}

func messageObject(id, model, finish, text string, usage *openai.Usage) openai.AnthropicMessage {
	return openai.AnthropicMessage{ID: id, Type: "message", Role: "assistant", Model: model,
		Content:    []openai.AnthropicText{{Type: "text", Text: text}},
		StopReason: stopReason(finish),
		Usage:      openai.AnthropicUsage{InputTokens: usage.PromptTokens, OutputTokens: usage.CompletionTokens}}
}

// messagesStream is Anthropic's Messages stream: message_start (with the
// input tokens), content_block_start, ping, one content_block_delta per
// token, content_block_stop, message_delta (stop reason, output tokens)
// and message_stop.
type messagesStream struct {
	id     string
	g      *generation
	finish string
	input  int
	vocab  *vocab
}

func (o *messagesStream) start(dst []byte) []byte {
	dst = appendEvent(dst, "message_start", map[string]any{"type": "message_start", "message": openai.AnthropicMessage{
		ID: o.id, Type: "message", Role: "assistant", Model: o.g.model, Content: []openai.AnthropicText{},
		Usage: openai.AnthropicUsage{InputTokens: o.input}}})
	dst = appendEvent(dst, "content_block_start", map[string]any{"type": "content_block_start", "index": 0,
		"content_block": openai.AnthropicText{Type: "text"}})
	return appendEvent(dst, "ping", map[string]any{"type": "ping"})
}

func (o *messagesStream) token(dst []byte, word uint16, _ string) []byte {
	dst = append(dst, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"...)
	dst = append(dst, o.vocab.json[word]...)
	return append(dst, "}}\n\n"...)
}

func (o *messagesStream) end(dst []byte, seq *Sequence, _ string) []byte {
	dst = appendEvent(dst, "content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	dst = appendEvent(dst, "message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stopReason(o.finish), "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": seq.Generated()}})
	return appendEvent(dst, "message_stop", map[string]any{"type": "message_stop"})
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req openai.TokenizeRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if _, e := s.resolveModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	var tokens []uint32
	switch {
	case req.Prompt != nil && req.Messages == nil:
		tokens = openai.AppendTokens(nil, *req.Prompt)
		s.learn(*req.Prompt)
	case req.Messages != nil && req.Prompt == nil:
		tokens = appendChatPrompt(nil, req.Messages)
		if req.AddGenerationPrompt != nil && !*req.AddGenerationPrompt {
			tokens = tokens[:len(tokens)-len(appendChatPrompt(nil, nil))]
		}
		for _, m := range req.Messages {
			s.learn(m.Role + "\n" + m.Content.Text)
		}
	default:
		writeError(w, invalid("prompt", "Either prompt or messages must be given, not both."))
		return
	}
	if tokens == nil {
		tokens = []uint32{}
	}
	writeJSON(w, http.StatusOK, openai.TokenizeResponse{Count: len(tokens), MaxModelLen: s.cfg.MaxModelLen, Tokens: tokens})
}

// learn remembers the text of every token of text for /detokenize: token
// ids are hashes, so only seen text can be turned back (and the
// vocabulary of generated text, known from the start).
func (s *Server) learn(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range openai.AppendPieces(nil, text) {
		if len(s.pieces) >= maxPieces {
			return
		}
		s.pieces[openai.AppendTokens(nil, p)[0]] = p
	}
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var req openai.DetokenizeRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if _, e := s.resolveModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	var b strings.Builder
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range req.Tokens {
		p, ok := s.pieces[t]
		if !ok {
			writeError(w, invalid("tokens", fmt.Sprintf("Token id %d is out of vocabulary (igw sim knows the text of tokens it generated or tokenized).", t)))
			return
		}
		b.WriteString(p)
	}
	writeJSON(w, http.StatusOK, openai.DetokenizeResponse{Prompt: b.String()})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, m := range s.models().Data {
		if m.ID == id {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	e := openai.NewError(http.StatusNotFound, openai.ErrTypeNotFound, fmt.Sprintf("The model `%s` does not exist.", openai.Echo(id)))
	e.Param = "model"
	writeError(w, e)
}
