package openai

import (
	"strings"
	"testing"
)

func pieces(text string) []string {
	var out []string
	forEachToken(text, func(s, e int) { out = append(out, text[s:e]) })
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
