package guard

import (
	"bytes"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// Go's regexp has no fast path for an unanchored case-insensitive pattern:
// `(?i)ignore previous instructions` cost 7 µs on a 70-byte prompt, more
// than everything else the gateway does per request. A deny rule is
// therefore guarded by a prefilter: a literal that every match must
// contain, found in the pattern's syntax tree. When the prompt does not
// contain it (the common case by far), the rule cannot match and the
// regexp does not run. The prefilter never changes a verdict: it only
// skips patterns that cannot match (FuzzPrefilter checks this).

// literal is a substring every match of a pattern contains.
type literal struct {
	text []byte // lower-cased when fold
	fold bool   // compare against the folded prompt
}

// requiredLiteral finds the longest literal every match of re contains, or
// returns false when there is none worth using.
func requiredLiteral(re *syntax.Regexp) (literal, bool) {
	text, fold, ok := walkLiteral(re.Simplify())
	if !ok || len(text) < 3 {
		return literal{}, false
	}
	if fold {
		for _, r := range text {
			if r >= utf8.RuneSelf {
				return literal{}, false // folding beyond ASCII is not worth the risk
			}
		}
		text = strings.ToLower(text)
	}
	return literal{text: []byte(text), fold: fold}, true
}

// walkLiteral returns the longest literal required by re.
func walkLiteral(re *syntax.Regexp) (string, bool, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return string(re.Rune), re.Flags&syntax.FoldCase != 0, true
	case syntax.OpCapture, syntax.OpPlus:
		return walkLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return walkLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		var best string
		var bestFold, found bool
		for _, sub := range re.Sub {
			if s, fold, ok := walkLiteral(sub); ok && len(s) > len(best) {
				best, bestFold, found = s, fold, true
			}
		}
		return best, bestFold, found
	}
	return "", false, false
}

// foldPrompt appends to dst the prompt with ASCII letters lower-cased and
// the two non-ASCII runes that fold to ASCII letters under Unicode simple
// case folding (U+212A KELVIN SIGN to k, U+017F LONG S to s) replaced, so
// that a folded literal found by regexp with (?i) is also found here.
func foldPrompt(dst, p []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(p))[:n+len(p)] // folding never lengthens
	j := n
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < utf8.RuneSelf:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
		case c == 0xE2 && i+2 < len(p) && p[i+1] == 0x84 && p[i+2] == 0xAA: // U+212A
			c = 'k'
			i += 2
		case c == 0xC5 && i+1 < len(p) && p[i+1] == 0xBF: // U+017F
			c = 's'
			i++
		}
		dst[j] = c
		j++
	}
	return dst[:j]
}

// mayMatch reports whether a prompt (and its folded form) can match a rule
// with this prefilter.
func (l *literal) mayMatch(prompt, folded []byte) bool {
	if l.fold {
		return bytes.Contains(folded, l.text)
	}
	return bytes.Contains(prompt, l.text)
}
