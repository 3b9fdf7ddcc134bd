// Command gentokenizer trains the small byte-level BPE tokenizer the tests
// carry (pkg/tokenizer/testdata/tiny-chatml): igw's tests need a real
// tokenizer.json and chat template in the Hugging Face layout, and one
// trained here on igw's own documentation is small, reproducible and under
// igw's licence, where a real model's would be megabytes with its own terms.
//
// Usage: go run ./hack/gentokenizer -out pkg/tokenizer/testdata/tiny-chatml README.md docs/*.md
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// chatTemplate is ChatML, as Qwen and many others ship it.
const chatTemplate = `{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

var specials = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}

// bytesToUnicode is GPT-2's reversible map from bytes to printable runes.
func bytesToUnicode() [256]rune {
	var out [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			out[b] = rune(b)
		} else {
			out[b] = rune(256 + n)
			n++
		}
	}
	return out
}

func main() {
	out := flag.String("out", "pkg/tokenizer/testdata/tiny-chatml", "output directory")
	merges := flag.Int("merges", 1500, "number of BPE merges")
	flag.Parse()
	var corpus strings.Builder
	for _, f := range flag.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		corpus.Write(b)
	}
	b2u := bytesToUnicode()
	// GPT-2's pre-tokenizer pattern, without the \p classes' lookahead.
	pre := regexp.MustCompile(`'s|'t|'re|'ve|'m|'ll|'d| ?\pL+| ?\pN+| ?[^\s\pL\pN]+|\s+`)
	words := map[string]int{}
	for _, w := range pre.FindAllString(corpus.String(), -1) {
		var sb strings.Builder
		for _, c := range []byte(w) {
			sb.WriteRune(b2u[c])
		}
		words[sb.String()]++
	}
	type word struct {
		syms  []string
		count int
	}
	ws := make([]word, 0, len(words))
	for w, c := range words {
		syms := []string{}
		for _, r := range w {
			syms = append(syms, string(r))
		}
		ws = append(ws, word{syms, c})
	}
	slices.SortFunc(ws, func(a, b word) int { return strings.Compare(strings.Join(a.syms, ""), strings.Join(b.syms, "")) })
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(b2u[b])] = b
	}
	var mergeList []string
	for len(mergeList) < *merges {
		pairs := map[[2]string]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.count
			}
		}
		var best [2]string
		bestN := 1
		for p, n := range pairs {
			if n > bestN || (n == bestN && bestN > 1 && (p[0]+" "+p[1]) < (best[0]+" "+best[1])) {
				best, bestN = p, n
			}
		}
		if bestN < 2 {
			break
		}
		joined := best[0] + best[1]
		mergeList = append(mergeList, best[0]+" "+best[1])
		vocab[joined] = len(vocab)
		for i := range ws {
			s := ws[i].syms
			for j := 0; j+1 < len(s); j++ {
				if s[j] == best[0] && s[j+1] == best[1] {
					s = slices.Replace(s, j, j+2, joined)
				}
			}
			ws[i].syms = s
		}
	}
	type addedToken struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var added []addedToken
	for _, s := range specials {
		added = append(added, addedToken{ID: len(vocab), Content: s, Special: true})
		vocab[s] = len(vocab)
	}
	tok := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": mergeList},
	}
	cfg := map[string]any{
		"tokenizer_class":  "PreTrainedTokenizerFast",
		"bos_token":        nil,
		"eos_token":        "<|im_end|>",
		"pad_token":        "<|endoftext|>",
		"model_max_length": 32768,
		"chat_template":    chatTemplate,
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	for name, v := range map[string]any{"tokenizer.json": tok, "tokenizer_config.json": cfg} {
		b, err := json.MarshalIndent(v, "", " ")
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(*out, name), append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("%d merges, vocabulary of %d\n", len(mergeList), len(vocab))
}
