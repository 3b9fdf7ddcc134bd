package openai

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

var validJSONCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `-1.25E-3`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}] } `,
	`{"model":"m","messages":[{"role":"user","content":"hi\nthere \u00e9 \ud83d\ude00 \/ \" \\"}]}`,
	`"12345678\"abcdefgh"`, `"abcdefg\u0041hijklmnop"`, "\"\xff\xfe invalid utf-8 is accepted\"",
	// invalid
	``, ` `, `{`, `}`, `[`, `]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a":1 "b":2}`,
	`{1:2}`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `tru`, `nul`, `falsey`, `"abc`, `"\x"`, `"\u12g4"`,
	`"\u123"`, "\"tab\there\"", "\"nl\nhere in a long string\"", `{"a":1}}`, `[1]]`, `{"a":1]`, `[1}`,
	`1 2`, `{} {}`, `"a" "b"`, "\x00", `[tru]`, `{"a":-}`, `{"a" 1}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
}

func TestValidJSON_MatchesEncodingJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
	// Every special byte at every offset of the eight-byte words.
	for n := 0; n < 20; n++ {
		for _, special := range []string{`"`, `\`, "\x01", "\x1f", `\n`, `\u0041`} {
			s := `"` + strings.Repeat("é", n/2) + strings.Repeat("x", n%2) + special + strings.Repeat("y", 9) + `"`
			if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
				t.Errorf("validJSON(%q) = %v, json.Valid says %v", s, got, want)
			}
		}
	}
}

// FuzzValidJSON_MatchesEncodingJSON: validJSON and json.Valid agree on
// every input.
func FuzzValidJSON_MatchesEncodingJSON(f *testing.F) {
	for _, c := range validJSONCases[:len(validJSONCases)-3] {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if got, want := validJSON(doc), json.Valid(doc); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", doc, got, want)
		}
	})
}

func benchmarkValid(b *testing.B, valid func([]byte) bool) {
	for _, size := range []int{4 << 10, 200 << 10} {
		body := chatBody(size)
		b.Run(byteSize(size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !valid(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// BenchmarkValidJSON is the validation step of ParseRequest; compare with
// BenchmarkValidJSON_EncodingJSON, what it replaced.
func BenchmarkValidJSON(b *testing.B)              { benchmarkValid(b, validJSON) }
func BenchmarkValidJSON_EncodingJSON(b *testing.B) { benchmarkValid(b, json.Valid) }

func chatBody(promptBytes int) []byte {
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", promptBytes/45+1)[:promptBytes]
	b, _ := json.Marshal(map[string]any{"model": "m", "stream": true, "max_tokens": 64,
		"messages": []map[string]string{{"role": "system", "content": "You are helpful.\nBe brief."}, {"role": "user", "content": prompt}}})
	return b
}

func byteSize(n int) string { return strconv.Itoa(n>>10) + "KB" }
