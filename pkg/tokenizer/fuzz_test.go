package tokenizer_test

import (
	"testing"
	"unicode/utf8"

	"github.com/igw-dev/igw/pkg/tokenizer"
)

// FuzzEncode feeds arbitrary text (invalid UTF-8, combining marks, special
// tokens cut in half, control characters) to the tokenizer a prompt goes
// through. The library panics or exits the process (log.Fatal) on some
// internal errors; igw recovers panics into errors, and this fuzz target
// is how an input that would exit the gateway would be found.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "hello world", "<|im_start|>user\nhi<|im_end|>", "<|im_sta", "e\u0301\u0301\u0301",
		"\x00\xff\xfe", "日本語のテキスト", "   \t\n\r  ", "<|im_end|><|im_end|>", "\u200b\u200d\U0001F600"} {
		f.Add(s, false)
	}
	tk, err := tokenizer.Load(tiny, tokenizer.Options{MaxPromptBytes: 4096, CacheTokens: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, special bool) {
		toks, err := tk.Encode(text, special)
		if err != nil {
			return
		}
		if utf8.ValidString(text) && len(text) > 0 && len(text) <= 4096 && len(toks.IDs) == 0 && !special {
			t.Errorf("%q: no tokens", text)
		}
	})
}
