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
	forEachToken(text, func(start, end int) {
		dst = append(dst, uint32(xxhash.Sum64String(text[start:end])))
	})
	return dst
}

// CountTokens returns how many tokens text has, without allocating.
func CountTokens(text string) int {
	n := 0
	forEachToken(text, func(int, int) { n++ })
	return n
}

// forEachToken calls emit with the byte range of every token of text.
func forEachToken(text string, emit func(start, end int)) {
	i := 0
	for i < len(text) {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		switch {
		case r == '\n':
			emit(i, i+size)
			i += size
		case r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f':
			// A run of horizontal space. Its last rune attaches to a
			// following visible token when that rune is a plain space.
			j := i
			for j < len(text) {
				c, s := utf8.DecodeRuneInString(text[j:])
				if c == '\n' || !isHorizontalSpace(c) {
					break
				}
				j += s
			}
			attach := j < len(text) && text[j-1] == ' ' && text[j] != '\n'
			if attach {
				if j-1 > i {
					emit(i, j-1)
				}
				i = emitVisible(text, j-1, j, emit)
			} else {
				emit(i, j)
				i = j
			}
		default:
			i = emitVisible(text, i, i, emit)
		}
	}
}

// emitVisible emits the token (or word pieces) that starts with the visible
// rune at text[at:], the first token beginning at start (start < at when a
// space is attached). It returns the index after what it consumed.
func emitVisible(text string, start, at int, emit func(start, end int)) int {
	r, size := utf8.DecodeRuneInString(text[at:])
	if !isWordRune(r) {
		emit(start, at+size)
		return at + size
	}
	j := at
	runes := 0
	for j < len(text) {
		c, s := rune(text[j]), 1
		if c >= utf8.RuneSelf {
			c, s = utf8.DecodeRuneInString(text[j:])
		}
		if !isWordRune(c) {
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

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isHorizontalSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f' || (r >= utf8.RuneSelf && unicode.IsSpace(r))
}
