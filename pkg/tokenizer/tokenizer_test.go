package tokenizer_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/tokenizer"
)

const tiny = "testdata/tiny-chatml"

func load(t testing.TB, o tokenizer.Options) *tokenizer.Tokenizer {
	t.Helper()
	tk, err := tokenizer.Load(tiny, o)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestEncode_BPEMergesAndSpecialTokens(t *testing.T) {
	tk := load(t, tokenizer.Options{})
	toks, err := tk.Encode("the gateway routes the request", false)
	if err != nil {
		t.Fatal(err)
	}
	// Trained on igw's docs: common words are single tokens, so far
	// fewer tokens than bytes.
	if n := len(toks.IDs); n == 0 || n > 10 {
		t.Errorf("%d tokens for 30 bytes of common words: %v", n, toks.IDs)
	}
	// A special token in the text is one id, past the byte-level vocabulary.
	sp, err := tk.Encode("<|im_start|>user", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.IDs) < 2 || sp.IDs[0] < 1700 {
		t.Errorf("<|im_start|> not a single special id: %v", sp.IDs)
	}
	// Deterministic, and a text extending another shares its token prefix
	// when the cut is at a word boundary.
	a, _ := tk.Encode("shared system prompt about caches", false)
	b, _ := tk.Encode("shared system prompt about caches and queues", false)
	if !slices.Equal(a.IDs, b.IDs[:len(a.IDs)]) {
		t.Errorf("extended text changed the prefix tokens: %v vs %v", a.IDs, b.IDs)
	}
}

func TestEncodeChat_RendersChatMLTemplate(t *testing.T) {
	tk := load(t, tokenizer.Options{})
	if !tk.HasChatTemplate() {
		t.Fatal("no chat template loaded")
	}
	text, err := tk.RenderChat([]tokenizer.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if text != want {
		t.Errorf("rendered %q, want %q", text, want)
	}
	chat, err := tk.EncodeChat([]tokenizer.Message{{Role: "user", Content: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := tk.Encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", false)
	if !slices.Equal(chat.IDs, plain.IDs) {
		t.Errorf("chat tokens %v differ from its rendered text's %v", chat.IDs, plain.IDs)
	}
}

func TestEncode_LongPromptCutAtWordBoundary(t *testing.T) {
	tk := load(t, tokenizer.Options{MaxPromptBytes: 100})
	long := strings.Repeat("the prefix cache holds blocks of tokens ", 20)
	toks, err := tk.Encode(long, false)
	if err != nil {
		t.Fatal(err)
	}
	if !toks.Truncated {
		t.Fatal("800 bytes with a 100-byte limit not reported truncated")
	}
	full := load(t, tokenizer.Options{})
	all, _ := full.Encode(long, false)
	if len(toks.IDs) >= len(all.IDs) || !slices.Equal(toks.IDs, all.IDs[:len(toks.IDs)]) {
		t.Errorf("truncated tokens are not a prefix of the full prompt's: %v / %v", toks.IDs, all.IDs)
	}
	// No whitespace at all: cut at the byte limit on a rune boundary.
	if _, err := tk.Encode(strings.Repeat("é", 200), false); err != nil {
		t.Errorf("unspaced text: %v", err)
	}
}

func TestLoad_BadDirectories(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		d := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := map[string]map[string]string{
		"missing":         {},
		"not json":        {"tokenizer.json": "{"},
		"no model type":   {"tokenizer.json": `{"model": {}}`},
		"wrong types":     {"tokenizer.json": `{"model": {"type": 7}, "pre_tokenizer": {"type": []}}`},
		"bad template":    {"tokenizer.json": "", "tokenizer_config.json": `{"chat_template": "{% for %}"}`},
		"config not json": {"tokenizer.json": "", "tokenizer_config.json": `[`},
		"template list":   {"tokenizer.json": "", "tokenizer_config.json": `{"chat_template": [{"name": "tool_use", "template": "x"}]}`},
	}
	real, err := os.ReadFile(filepath.Join(tiny, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range cases {
		d := write(name, "")
		for f, body := range files {
			if body == "" && f == "tokenizer.json" {
				body = string(real)
			}
			if err := os.WriteFile(filepath.Join(d, f), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tokenizer.Load(d, tokenizer.Options{}); err == nil {
			t.Errorf("%s: loaded", name)
		} else if !strings.Contains(err.Error(), d) {
			t.Errorf("%s: error does not name the directory: %v", name, err)
		}
	}
	// Without tokenizer_config.json: tokenizes, but refuses chat prompts.
	d := write("no config", "")
	if err := os.WriteFile(filepath.Join(d, "tokenizer.json"), real, 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := tokenizer.Load(d, tokenizer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.EncodeChat([]tokenizer.Message{{Role: "user", Content: "x"}}); err != tokenizer.ErrNoChatTemplate {
		t.Errorf("chat without a template: %v", err)
	}
}

func TestEncode_ConcurrentCallersAgree(t *testing.T) {
	tk := load(t, tokenizer.Options{})
	want, _ := tk.Encode("routing requests to the replica with the longest cached prefix", false)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := tk.Encode("routing requests to the replica with the longest cached prefix", false)
				if err != nil || !slices.Equal(got.IDs, want.IDs) {
					t.Errorf("concurrent encode: %v %v", got.IDs, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkEncode measures tokenizing one chat prompt of a shared-prefix
// workload (a 4 KiB system prompt and a short question) and one at the
// default byte limit, cold (no piece cache) and with the system prompt
// cached: what precise routing adds per request.
func BenchmarkEncode(b *testing.B) {
	tk := load(b, tokenizer.Options{})
	system := strings.Repeat("The gateway routes each request to the model server that holds its prefix. ", 55)[:4096]
	msgs := []tokenizer.Message{{Role: "system", Content: system}, {Role: "user", Content: "How are blocks evicted?"}}
	b.Run("chat-4KiB-system-cached", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(system)))
		n := 0
		for b.Loop() {
			n++ // a new question every time: only the system prompt is cached
			q := []tokenizer.Message{msgs[0], {Role: "user", Content: "question " + strconv.Itoa(n) + " about eviction"}}
			if _, err := tk.EncodeChat(q); err != nil {
				b.Fatal(err)
			}
		}
	})
	cold := load(b, tokenizer.Options{CacheTokens: -1})
	b.Run("chat-4KiB-cold", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(system)))
		for b.Loop() {
			if _, err := cold.EncodeChat(msgs); err != nil {
				b.Fatal(err)
			}
		}
	})
	long := strings.Repeat(system, 20)
	b.Run("limit-32KiB-cold", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(tokenizer.DefaultMaxPromptBytes)
		for b.Loop() {
			if _, err := cold.Encode(long, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The words are one token each in the test tokenizer, so a text of n of
// them is exactly n tokens, alone and after a chat template's newline.
func TestOneTokenWords_TextOfNWordsIsNTokens(t *testing.T) {
	tk := load(t, tokenizer.Options{})
	words, err := tk.OneTokenWords(8)
	if err != nil {
		t.Fatal(err)
	}
	if len(words) < 100 {
		t.Fatalf("%d one-token words, want at least 100 from the test tokenizer", len(words))
	}
	if !slices.IsSorted(words) {
		t.Fatal("words not sorted")
	}
	text := strings.Join(words, " ")
	toks, err := tk.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks.IDs) != len(words) {
		t.Fatalf("%d words gave %d tokens", len(words), len(toks.IDs))
	}
	// "begin" is two tokens in the test tokenizer: not a one-token word.
	if slices.Contains(words, "begin") {
		t.Fatal(`"begin" (two tokens) listed`)
	}
}
