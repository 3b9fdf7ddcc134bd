package openai

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func pieces(text string) []string {
	var out []string
	for i := 0; i < len(text); {
		end := tokenEnd(text, i)
		out = append(out, text[i:end])
		i = end
	}
	return out
}

func TestTokenize_Rules(t *testing.T) {
	cases := []struct {
		text string
		want []string
	}{
		{"hello world", []string{"hello", " world"}},
		{"internationalization", []string{"inter", "natio", "naliz", "ation"}},
		{"Hi, there!", []string{"Hi", ",", " there", "!"}},
		{"a  b", []string{"a", " ", " b"}},
		{"line\nnext", []string{"line", "\n", "next"}},
		{"end \n", []string{"end", " ", "\n"}},
		{"\ttab", []string{"\t", "tab"}},
		{"x (y)", []string{"x", " (", "y", ")"}},
		{"naïve café", []string{"naïve", " café"}},
		{"12345678", []string{"12345", "678"}},
		{"", nil},
	}
	for _, tc := range cases {
		got := pieces(tc.text)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("%q → %q, want %q", tc.text, got, tc.want)
		}
		if n := CountTokens(tc.text); n != len(tc.want) {
			t.Errorf("CountTokens(%q) = %d, want %d", tc.text, n, len(tc.want))
		}
	}
}

func TestTokenize_PiecesCoverTheText(t *testing.T) {
	text := "The  quick\tbrown fox — jumps over\n\nthe lazy dog's 42 bones; ¿qué? "
	if got := strings.Join(pieces(text), ""); got != text {
		t.Fatalf("pieces do not reassemble the text: %q", got)
	}
}

func TestTokenize_PrefixAtBoundaryIsTokenPrefix(t *testing.T) {
	a := "System prompt shared by many users.\n"
	b := a + "Question one?"
	ta, tb := AppendTokens(nil, a), AppendTokens(nil, b)
	for i := range ta {
		if ta[i] != tb[i] {
			t.Fatalf("token %d differs", i)
		}
	}
}

func TestTokenize_AboutFourCharactersPerToken(t *testing.T) {
	text := "Platform teams put an inference gateway in front of fleets of model servers. " +
		"It routes each request to the replica that will serve it fastest, using queue depth, " +
		"cache utilization and prefix affinity, and it admits requests by priority when the GPUs are saturated."
	ratio := float64(len(text)) / float64(CountTokens(text))
	if ratio < 3.5 || ratio > 6 {
		t.Errorf("%.2f characters per token, want about 4", ratio)
	}
}

func BenchmarkAppendTokens_4KB(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 92)
	buf := make([]uint32, 0, 2048)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTokens(buf[:0], text)
	}
}

// referenceTokens is the tokenizer as first written (one pass emitting
// through a callback), kept to check tokenEnd against: the rules must not
// change, since token ids feed the simulator's prefix cache and quotas.
func referenceTokens(text string) []string {
	var out []string
	emit := func(s, e int) { out = append(out, text[s:e]) }
	isWord := func(r rune) bool {
		if r < utf8.RuneSelf {
			return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
		}
		return unicode.IsLetter(r) || unicode.IsDigit(r)
	}
	isHSpace := func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f' || (r >= utf8.RuneSelf && unicode.IsSpace(r))
	}
	visible := func(start, at int) int {
		r, size := utf8.DecodeRuneInString(text[at:])
		if !isWord(r) {
			emit(start, at+size)
			return at + size
		}
		j, runes := at, 0
		for j < len(text) {
			c, s := utf8.DecodeRuneInString(text[j:])
			if !isWord(c) {
				break
			}
			if runes == MaxWordPieceRunes {
				emit(start, j)
				start, runes = j, 0
			}
			j += s
			runes++
		}
		emit(start, j)
		return j
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == '\n':
			emit(i, i+size)
			i += size
		case r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f':
			j := i
			for j < len(text) {
				c, s := utf8.DecodeRuneInString(text[j:])
				if c == '\n' || !isHSpace(c) {
					break
				}
				j += s
			}
			if j < len(text) && text[j-1] == ' ' && text[j] != '\n' {
				if j-1 > i {
					emit(i, j-1)
				}
				i = visible(j-1, j)
			} else {
				emit(i, j)
				i = j
			}
		default:
			i = visible(i, i)
		}
	}
	return out
}

// FuzzTokenize_MatchesReference: tokenEnd splits every text exactly as the
// reference does.
func FuzzTokenize_MatchesReference(f *testing.F) {
	for _, s := range []string{"hello world", "internationalization", "a  b", "end \n", "\ttab", "naïve café",
		"x\u00a0y", " \u00a0 z", "\u2003word", "a \u3000\n", "\xff\xfe ab", "12345678", "日本語のテキスト", " \t \n "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		want := referenceTokens(text)
		var got []string
		for i := 0; i < len(text); {
			end := tokenEnd(text, i)
			got = append(got, text[i:end])
			i = end
		}
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Fatalf("%q: tokens %q, reference %q", text, got, want)
		}
		if n := CountTokens(text); n != len(want) {
			t.Fatalf("%q: CountTokens %d, reference %d", text, n, len(want))
		}
	})
}

func BenchmarkCountTokens_4KB(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 92)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		CountTokens(text)
	}
}
