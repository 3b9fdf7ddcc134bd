package bench

import (
	"testing"

	"github.com/igw-dev/igw/pkg/tokenizer"
)

// A comparison whose fleet tokenizes with a model's tokenizer builds its
// prompts from that tokenizer's one-token words, so a 4,000-token system
// prompt is 4,000 of its tokens; with the built-in words the test
// tokenizer makes it about twice as long.
func TestWithTokenizerVocabulary_PromptsAreAsLongAsStated(t *testing.T) {
	const dir = "../tokenizer/testdata/tiny-chatml"
	tk, err := tokenizer.Load(dir, tokenizer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := &Workload{Model: "m", Seed: 7, SharedPrefix: &SharedPrefix{
		NumGroups: 2, NumPromptsPerGroup: 2, SystemPromptLen: 400, QuestionLen: 50, OutputLen: 10}}
	systemTokens := func(w *Workload) int {
		t.Helper()
		src, err := w.NewSource()
		if err != nil {
			t.Fatal(err)
		}
		req := src.Next()
		toks, err := tk.Encode(req.Messages[0].Content.Text, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(toks.IDs)
	}
	if n := systemTokens(base); n < 600 {
		t.Fatalf("built-in words: a 400-word system prompt is %d tokens in the test tokenizer; the test assumes they split", n)
	}
	w, err := withTokenizerVocabulary(base, dir)
	if err != nil {
		t.Fatal(err)
	}
	if base.Vocabulary != nil {
		t.Fatal("the workload given was changed")
	}
	if n := systemTokens(w); n != 400 {
		t.Fatalf("with the tokenizer's words: %d tokens, want 400", n)
	}
	if _, err := withTokenizerVocabulary(base, "testdata/no-such-tokenizer"); err == nil {
		t.Fatal("a missing tokenizer was accepted")
	}
	short := *base
	short.Vocabulary = []string{"a", "b"}
	if _, err := short.NewSource(); err == nil {
		t.Fatal("a two-word vocabulary was accepted")
	}
}
