// Package tokenizer turns prompts into token ids the way a model server
// does: with the model's own tokenizer (tokenizer.json) and chat template
// (tokenizer_config.json's chat_template), loaded from a local directory
// in the Hugging Face layout. Precise prefix-cache routing needs it: the
// KV-cache events a server publishes name blocks of token ids, so igw can
// only tell which server holds a prompt's prefix if it tokenizes the prompt
// exactly as the server will. igw sim uses the same files, so its events
// and igw's tokens agree end to end.
//
// Both libraries are pure Go (no cgo): github.com/sugarme/tokenizer reads
// tokenizer.json (BPE, WordPiece, WordLevel, Unigram models with their
// normalizers, pre-tokenizers, post-processors and added tokens);
// github.com/ardanlabs/jinja renders chat templates (the Jinja subset
// model chat templates use, with raise_exception and the string methods).
//
// Cost is bounded: Encode tokenizes at most the configured prompt bytes
// (Options.MaxPromptBytes); a longer text is cut at a whitespace boundary
// before the limit and its last whole block is not trusted (Tokens
// reports Truncated), so tokens before the cut are exactly the engine's.
// A bounded cache of the tokens of long pieces of text between added
// tokens (a shared system prompt) saves most of the cost on shared-prefix
// workloads. BenchmarkEncode measures both.
package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/ardanlabs/jinja"
	"github.com/cespare/xxhash/v2"
	sugar "github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// DefaultMaxPromptBytes bounds the text tokenized per prompt: 32 KiB is
// about 8,000 tokens, 512 blocks of 16, what the
// precise-prefix-cache-scorer matches by default.
const DefaultMaxPromptBytes = 32 << 10

// DefaultCacheTokens bounds the piece cache: a million token ids, 4 MiB.
const DefaultCacheTokens = 1 << 20

// Options tune a loaded tokenizer.
type Options struct {
	// MaxPromptBytes bounds the text tokenized per prompt
	// (DefaultMaxPromptBytes when ≤ 0).
	MaxPromptBytes int
	// CacheTokens bounds the token ids the piece cache holds
	// (DefaultCacheTokens when 0; negative: no cache).
	CacheTokens int
}

// Tokenizer is one model's tokenizer and chat template. Safe for
// concurrent use.
type Tokenizer struct {
	dir      string
	tk       *sugar.Tokenizer
	template *jinja.Template // nil: the model has no chat template
	// added splits a text at the added tokens (<|im_start|>); each piece
	// between them is tokenized by the model and each added token is its
	// own id, as Hugging Face tokenizers do. nil: none.
	added    *regexp.Regexp
	addedID  map[string]uint32
	bos, eos string
	maxBytes int
	cache    *pieceCache
}

// Message is one chat message as the template sees it.
type Message struct {
	Role, Content string
}

// ErrNoChatTemplate is returned for a chat prompt when the model's
// tokenizer_config.json has no chat_template: the engine would refuse it
// too (or use a template igw cannot know), so igw does not guess.
var ErrNoChatTemplate = errors.New("tokenizer: the model has no chat template")

// tokenizerConfig is the part of tokenizer_config.json igw reads.
type tokenizerConfig struct {
	ChatTemplate json.RawMessage `json:"chat_template"`
	BOSToken     json.RawMessage `json:"bos_token"`
	EOSToken     json.RawMessage `json:"eos_token"`
}

// Load reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
// (chat template, bos and eos tokens).
func Load(dir string, o Options) (t *Tokenizer, err error) {
	if o.MaxPromptBytes <= 0 {
		o.MaxPromptBytes = DefaultMaxPromptBytes
	}
	if o.CacheTokens == 0 {
		o.CacheTokens = DefaultCacheTokens
	}
	t = &Tokenizer{dir: dir, maxBytes: o.MaxPromptBytes, cache: newPieceCache(o.CacheTokens)}
	// The library panics on some malformed files (type assertions on
	// the JSON it decoded); a bad file is a configuration error.
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("tokenizer %s: malformed tokenizer.json: %v", dir, r)
		}
	}()
	file, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", dir, err)
	}
	if t.tk, err = pretrained.FromReader(bytes.NewReader(file)); err != nil {
		return nil, fmt.Errorf("tokenizer %s: tokenizer.json: %w", dir, err)
	}
	if err := t.readAddedTokens(file); err != nil {
		return nil, fmt.Errorf("tokenizer %s: tokenizer.json: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("tokenizer %s: %w", dir, err)
	}
	var cfg tokenizerConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("tokenizer %s: tokenizer_config.json: %w", dir, err)
	}
	t.bos, t.eos = tokenText(cfg.BOSToken), tokenText(cfg.EOSToken)
	src, err := chatTemplateSource(cfg.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: tokenizer_config.json: chat_template: %w", dir, err)
	}
	if src != "" {
		if t.template, err = jinja.Compile(src); err != nil {
			return nil, fmt.Errorf("tokenizer %s: chat_template: %w", dir, err)
		}
	}
	return t, nil
}

// readAddedTokens learns the added tokens of tokenizer.json. The library
// reads them too, but drops them from encodings, so igw splits the text at
// them itself.
func (t *Tokenizer) readAddedTokens(file []byte) error {
	var doc struct {
		AddedTokens []struct {
			ID      uint32 `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(file, &doc); err != nil {
		return fmt.Errorf("added_tokens: %w", err)
	}
	if len(doc.AddedTokens) == 0 {
		return nil
	}
	t.addedID = make(map[string]uint32, len(doc.AddedTokens))
	alts := make([]string, 0, len(doc.AddedTokens))
	for _, a := range doc.AddedTokens {
		if a.Content == "" {
			return fmt.Errorf("added_tokens: token %d has no content", a.ID)
		}
		t.addedID[a.Content] = a.ID
		alts = append(alts, regexp.QuoteMeta(a.Content))
	}
	// Longest first: an added token that starts another never wins.
	slices.SortFunc(alts, func(a, b string) int { return len(b) - len(a) })
	t.added = regexp.MustCompile(strings.Join(alts, "|"))
	return nil
}

// tokenText reads a special token given as a string or as an added-token
// object {"content": ...}.
func tokenText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

// chatTemplateSource reads chat_template: a string, or a list of named
// templates of which the one named "default" is the chat template.
func chatTemplateSource(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", fmt.Errorf("neither a string nor a list of named templates: %w", err)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", errors.New(`no template named "default"`)
}

// Dir is the directory the tokenizer was loaded from.
func (t *Tokenizer) Dir() string { return t.dir }

// HasChatTemplate reports whether chat prompts can be rendered.
func (t *Tokenizer) HasChatTemplate() bool { return t.template != nil }

// RenderChat renders messages with the model's chat template and the
// generation prompt, as vLLM does for /v1/chat/completions.
func (t *Tokenizer) RenderChat(messages []Message) (string, error) {
	if t.template == nil {
		return "", ErrNoChatTemplate
	}
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	out, err := t.template.Render(map[string]any{
		"messages":              msgs,
		"add_generation_prompt": true,
		"bos_token":             t.bos,
		"eos_token":             t.eos,
	})
	if err != nil {
		return "", fmt.Errorf("tokenizer %s: chat template: %w", t.dir, err)
	}
	return out, nil
}

// Tokens are a prompt's token ids.
type Tokens struct {
	IDs []uint32
	// Truncated reports that the text was longer than the tokenizer's
	// MaxPromptBytes and only a prefix of it was tokenized; the ids are
	// the engine's up to the cut, and the last of them may not be.
	Truncated bool
}

// Encode tokenizes text as the engine tokenizes a prompt: with the
// tokenizer's post-processor (BOS and the like) when addSpecial, which
// vLLM does for completions, and without it for a rendered chat prompt,
// whose template already holds the special tokens. Special tokens written
// in the text (<|im_start|>) become their ids.
func (t *Tokenizer) Encode(text string, addSpecial bool) (toks Tokens, err error) {
	if len(text) > t.maxBytes {
		text, toks.Truncated = cutAtSpace(text, t.maxBytes), true
	}
	defer func() {
		if r := recover(); r != nil {
			toks, err = Tokens{}, fmt.Errorf("tokenizer %s: encode: %v", t.dir, r)
		}
	}()
	ids := make([]uint32, 0, len(text)/3+8)
	at := 0
	if t.added != nil {
		for _, m := range t.added.FindAllStringIndex(text, -1) {
			if ids, err = t.encodePiece(ids, text[at:m[0]], addSpecial && at == 0); err != nil {
				return Tokens{}, err
			}
			ids = append(ids, t.addedID[text[m[0]:m[1]]])
			at = m[1]
		}
	}
	if ids, err = t.encodePiece(ids, text[at:], addSpecial && at == 0); err != nil {
		return Tokens{}, err
	}
	toks.IDs = ids
	return toks, nil
}

// encodePiece appends the model's tokens of a text without added tokens.
func (t *Tokenizer) encodePiece(dst []uint32, text string, addSpecial bool) ([]uint32, error) {
	if text == "" && !addSpecial {
		return dst, nil
	}
	// Every piece is worth caching, short ones too: the library compiles
	// its pre-tokenizer's regexp on every call, about half a millisecond.
	cacheable := !addSpecial
	if cacheable {
		if ids, ok := t.cache.get(text); ok {
			return append(dst, ids...), nil
		}
	}
	enc, err := t.tk.EncodeSingle(text, addSpecial)
	if err != nil {
		return dst, fmt.Errorf("tokenizer %s: encode: %w", t.dir, err)
	}
	n := len(dst)
	for _, id := range enc.Ids {
		dst = append(dst, uint32(id))
	}
	if cacheable {
		t.cache.put(text, dst[n:])
	}
	return dst, nil
}

// pieceCache remembers the tokens of recent pieces of text between added
// tokens. The library is slow (BenchmarkEncode), and the pieces that cost
// most are the ones requests share: a system prompt, an earlier turn of a
// conversation. Each piece between two added tokens tokenizes on its own,
// so its cached tokens are exactly what tokenizing it again would give.
// Bounded by the token ids held: when full it is emptied and refills with
// what is in use (an epoch, cheaper than LRU bookkeeping on every hit).
type pieceCache struct {
	capacity int // token ids; ≤ 0: off
	mu       sync.Mutex
	held     int
	byText   map[uint64]cachedPiece
}

type cachedPiece struct {
	length int // bytes of text: a cheap guard next to the 64-bit hash
	ids    []uint32
}

func newPieceCache(capacity int) *pieceCache {
	return &pieceCache{capacity: capacity, byText: map[uint64]cachedPiece{}}
}

func (c *pieceCache) get(text string) ([]uint32, bool) {
	if c.capacity <= 0 {
		return nil, false
	}
	h := xxhash.Sum64String(text)
	c.mu.Lock()
	p, ok := c.byText[h]
	c.mu.Unlock()
	return p.ids, ok && p.length == len(text)
}

func (c *pieceCache) put(text string, ids []uint32) {
	if c.capacity <= 0 || len(ids) > c.capacity {
		return
	}
	h := xxhash.Sum64String(text)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held+len(ids) > c.capacity {
		clear(c.byText)
		c.held = 0
	}
	c.byText[h] = cachedPiece{length: len(text), ids: slices.Clone(ids)}
	c.held += len(ids)
}

// EncodeChat renders messages with the chat template and tokenizes the
// result without adding special tokens, as vLLM does for chat requests.
func (t *Tokenizer) EncodeChat(messages []Message) (Tokens, error) {
	text, err := t.RenderChat(messages)
	if err != nil {
		return Tokens{}, err
	}
	return t.Encode(text, false)
}

// cutAtSpace returns the longest prefix of s of at most n bytes that ends
// just before a whitespace character, so that no pre-tokenized word is cut
// (a word cut in two tokenizes differently); a text without whitespace
// there is cut at n bytes, on a rune boundary.
func cutAtSpace(s string, n int) string {
	i := strings.LastIndexFunc(s[:n], unicode.IsSpace)
	if i > 0 {
		return s[:i]
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// OneTokenWords returns, sorted, the words of one to maxLen lowercase
// ASCII letters that the model tokenizes as exactly one token both alone
// and after a space. A text of such words separated by single spaces is
// then exactly one token per word, which is how igw bench keeps a
// workload's lengths (stated in tokens) exact under a model's tokenizer:
// a tokenizer with a small vocabulary splits ordinary words into several
// tokens, and the same workload would otherwise be several times longer
// for a fleet that tokenizes with it than for one that does not.
func (t *Tokenizer) OneTokenWords(maxLen int) (words []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			words, err = nil, fmt.Errorf("tokenizer %s: vocabulary: %v", t.dir, r)
		}
	}()
	seen := map[string]bool{}
	for piece := range t.tk.GetVocab(false) {
		// Byte-level BPE marks a leading space with Ġ, SentencePiece with ▁.
		w := strings.TrimPrefix(strings.TrimPrefix(piece, "Ġ"), "▁")
		if w == "" || len(w) > maxLen || seen[w] || strings.TrimLeft(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			continue
		}
		seen[w] = true
		alone, err := t.Encode(w, false)
		if err != nil {
			return nil, err
		}
		spaced, err := t.Encode(" "+w, false)
		if err != nil {
			return nil, err
		}
		if len(alone.IDs) == 1 && len(spaced.IDs) == 1 {
			words = append(words, w)
		}
	}
	slices.Sort(words)
	return words, nil
}
