package openai

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEcho_BoundsClientValues(t *testing.T) {
	if got := Echo("llama"); got != "llama" {
		t.Errorf("a short value is changed: %q", got)
	}
	long := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes
	got := Echo(long)
	if len(got) > maxEcho+32 || !utf8.ValidString(got) || !strings.HasSuffix(got, "… (2097152 bytes)") {
		t.Errorf("Echo of 2 MiB: %d bytes, valid UTF-8 %v, tail %q", len(got), utf8.ValidString(got), got[len(got)-24:])
	}
}
