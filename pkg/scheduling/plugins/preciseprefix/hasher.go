package preciseprefix

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/igw-dev/igw/pkg/kvevents"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/tokenizer"
)

var _ PromptHasher = (*TokenHasher)(nil)

// TokenHasher is the PromptHasher that tokenizes prompts with the models'
// own tokenizers and chat templates (package tokenizer) and hashes their
// blocks with igw's chained token hash (kvevents.PromptHashes), the keys
// the KV-event index keeps.
type TokenHasher struct {
	blockSize, maxBlocks int
	// byModel holds the tokenizer of each configured model name;
	// fallback, when set, serves every other model.
	byModel  map[string]*tokenizer.Tokenizer
	fallback *tokenizer.Tokenizer
}

// NewTokenHasher loads the tokenizer directories: dir (may be empty) for
// every model, byModel for the models named (served model names, as the
// request's target model or its client-facing name). Loading fails on a
// directory without a valid tokenizer.json.
func NewTokenHasher(dir string, byModel map[string]string, blockSize, maxBlocks, maxPromptBytes int) (*TokenHasher, error) {
	h := &TokenHasher{blockSize: blockSize, maxBlocks: maxBlocks, byModel: map[string]*tokenizer.Tokenizer{}}
	loaded := map[string]*tokenizer.Tokenizer{} // one load per directory
	load := func(d string) (*tokenizer.Tokenizer, error) {
		if t, ok := loaded[d]; ok {
			return t, nil
		}
		t, err := tokenizer.Load(d, tokenizer.Options{MaxPromptBytes: maxPromptBytes})
		if err != nil {
			return nil, err
		}
		loaded[d] = t
		return t, nil
	}
	if dir != "" {
		t, err := load(dir)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		h.fallback = t
	}
	names := make([]string, 0, len(byModel))
	for m := range byModel {
		names = append(names, m)
	}
	slices.Sort(names)
	for _, m := range names {
		t, err := load(byModel[m])
		if err != nil {
			return nil, fmt.Errorf("modelTokenizers.%s: %w", m, err)
		}
		h.byModel[m] = t
	}
	return h, nil
}

// For returns the tokenizer of a model, nil when none is configured.
func (h *TokenHasher) For(req *scheduling.Request) *tokenizer.Tokenizer {
	if t, ok := h.byModel[req.EffectiveModel()]; ok {
		return t
	}
	if t, ok := h.byModel[req.Model]; ok {
		return t
	}
	return h.fallback
}

// chatBody is the part of a chat completion the template renders.
type chatBody struct {
	Messages []openai.ChatMessage `json:"messages"`
}

// BlockHashes implements PromptHasher: chat completions are rendered with
// the model's chat template (the body's messages, as vLLM renders them),
// completions tokenized with the tokenizer's special tokens (vLLM adds
// BOS). Other APIs, prompts sent as token ids, and models without a
// tokenizer are not hashed (ok false: the scorer falls back to
// approximate matching for them).
func (h *TokenHasher) BlockHashes(req *scheduling.Request) ([]uint64, uint32, bool) {
	t := h.For(req)
	if t == nil {
		return nil, 0, false
	}
	var toks tokenizer.Tokens
	var err error
	switch req.Kind {
	case openai.KindChat:
		if req.Body == nil {
			return nil, 0, false
		}
		var body chatBody
		if err := json.Unmarshal(req.Body, &body); err != nil {
			return nil, 0, false
		}
		msgs := make([]tokenizer.Message, len(body.Messages))
		for i, m := range body.Messages {
			msgs[i] = tokenizer.Message{Role: m.Role, Content: m.Content.Text}
		}
		toks, err = t.EncodeChat(msgs)
	case openai.KindCompletion:
		toks, err = t.Encode(string(req.Prompt), true)
	default:
		return nil, 0, false
	}
	if err != nil {
		return nil, 0, false
	}
	ids := toks.IDs
	if toks.Truncated && len(ids) >= h.blockSize {
		// The last block before the cut may differ from the engine's.
		ids = ids[:(len(ids)/h.blockSize-1)*h.blockSize]
	}
	hashes := kvevents.PromptHashes(make([]uint64, 0, min(len(ids)/h.blockSize, h.maxBlocks)), ids, h.blockSize, h.maxBlocks)
	return hashes, kvevents.LoRAKey(req.LoRAAdapter, 0, false), true
}
