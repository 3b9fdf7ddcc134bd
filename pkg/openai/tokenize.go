package openai

import (
	"unicode"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// MaxWordPieceRunes is the longest run of letters or digits that is one
// token; longer words are cut into pieces of this many runes. With the
// leading space that a piece carries, English text comes out at about four
// characters per token, close to what BPE tokenizers of Llama-class models
// produce.
const MaxWordPieceRunes = 5

// Tokenizer rules (igw's approximate, deterministic tokenizer):
//
//  1. A run of letters and digits is a word. It is cut into pieces of at
//     most MaxWordPieceRunes runes; each piece is one token.
//  2. Every other visible rune (punctuation, symbols) is one token.
//  3. A newline is one token.
//  4. A single space directly before a word or symbol belongs to that
//     token (" hello" is one token). Any other run of spaces and tabs is
//     one token.
//
// A token's id is the 32-bit xxhash of its bytes, so equal text always gives
// equal ids, and a text that is a prefix of another (ending at a token
// boundary, e.g. after a newline) gives a token prefix of it.

// AppendTokens appends the token ids of text to dst and returns it.
func AppendTokens(dst []uint32, text string) []uint32 {
	for i := 0; i < len(text); {
		end := tokenEnd(text, i)
		dst = append(dst, uint32(xxhash.Sum64String(text[i:end])))
		i = end
	}
	return dst
}

// CountTokens returns how many tokens text has, without allocating.
func CountTokens(text string) int {
	n := 0
	for i := 0; i < len(text); i = tokenEnd(text, i) {
		n++
	}
	return n
}

// byteClass sorts ASCII bytes for the tokenizer's fast path; bytes ≥ 0x80
// (multi-byte runes) take the Unicode path.
type byteClass uint8

const (
	classOther   byteClass = iota // a visible non-word rune: one token
	classWord                     // a letter or digit
	classSpace                    // ' '
	classHSpace                   // '\t', '\r', '\v', '\f'
	classNewline                  // '\n'
	classUnicode                  // the first byte of a multi-byte rune
	// classWideSpace is a non-ASCII space (U+00A0, U+2003...): it extends
	// a run of spaces but does not start one (it is then a symbol).
	classWideSpace
)

var asciiClass = func() (t [256]byteClass) {
	for c := range 256 {
		switch {
		case c >= utf8.RuneSelf:
			t[c] = classUnicode
		case ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9'):
			t[c] = classWord
		case c == ' ':
			t[c] = classSpace
		case c == '\t' || c == '\r' || c == '\v' || c == '\f':
			t[c] = classHSpace
		case c == '\n':
			t[c] = classNewline
		}
	}
	return t
}()

// runeClass is the class of the rune at text[i] and its size.
func runeClass(text string, i int) (byteClass, int) {
	if c := asciiClass[text[i]]; c != classUnicode {
		return c, 1
	}
	r, size := utf8.DecodeRuneInString(text[i:])
	switch {
	case unicode.IsLetter(r) || unicode.IsDigit(r):
		return classWord, size
	case unicode.IsSpace(r):
		return classWideSpace, size
	}
	return classOther, size
}

// tokenEnd returns the end of the token that starts at text[i] (i <
// len(text)), by the rules above. Callers walk a text token by token with
// it; a loop calling a plain function costs a fraction of an emit callback
// per token, and the ASCII table keeps it off the Unicode tables for
// English text.
func tokenEnd(text string, i int) int {
	class, size := runeClass(text, i)
	switch class {
	case classNewline:
		return i + size
	case classSpace, classHSpace:
		// A run of horizontal space. Its last rune attaches to a following
		// visible token when that rune is a plain space.
		j := i + size
		for j < len(text) {
			c, s := asciiClass[text[j]], 1
			if c == classUnicode {
				c, s = runeClass(text, j)
			}
			if c != classSpace && c != classHSpace && c != classWideSpace {
				break
			}
			j += s
		}
		if j < len(text) && text[j-1] == ' ' && text[j] != '\n' {
			if j-1 > i {
				return j - 1 // the run but its last space
			}
			return visibleEnd(text, j) // " word": the space and what follows
		}
		return j
	}
	return visibleEnd(text, i)
}

// visibleEnd returns the end of the token made of the visible rune at
// text[at] and, for a letter or digit, the word piece it starts (at most
// MaxWordPieceRunes word runes).
func visibleEnd(text string, at int) int {
	class, size := runeClass(text, at)
	if class != classWord {
		return at + size
	}
	j, runes := at+size, 1
	for j < len(text) && runes < MaxWordPieceRunes {
		c, s := asciiClass[text[j]], 1
		if c == classUnicode {
			c, s = runeClass(text, j)
		}
		if c != classWord {
			break
		}
		j += s
		runes++
	}
	return j
}

// AppendPieces appends the text of every token of text to dst, in order:
// the pieces AppendTokens hashes, so a token id can be mapped back to its
// text (igw sim's /detokenize).
func AppendPieces(dst []string, text string) []string {
	for i := 0; i < len(text); {
		end := tokenEnd(text, i)
		dst = append(dst, text[i:end])
		i = end
	}
	return dst
}
