package openai

import (
	"encoding/binary"
	"math/bits"
)

// validJSON reports whether doc is exactly one JSON value (RFC 8259) with
// optional surrounding whitespace: the same answer as json.Valid, nesting
// limit included. It exists because json.Valid walks a state machine one
// byte at a time, and a request body is mostly the prompt inside a few long
// strings: here string contents are skipped eight bytes at a time, which
// made validation several times cheaper than json.Valid at 4 KB and beyond
// (BenchmarkValidJSON). FuzzValidJSON_MatchesEncodingJSON checks the two
// agree on arbitrary input.
func validJSON(doc []byte) bool {
	// open holds the kind ('{' or '[') of every container not yet closed.
	var openBuf [32]byte
	open := openBuf[:0]
	i := 0
	// expectValue: a value starts at the next non-space byte. Otherwise a
	// value has just ended and a comma, a closing bracket or the end of the
	// document follows.
	expectValue := true
	for {
		i = skipSpace(doc, i)
		if expectValue {
			if i >= len(doc) {
				return false
			}
			switch c := doc[i]; {
			case c == '{':
				if len(open) == maxJSONDepth {
					return false
				}
				open = append(open, '{')
				i = skipSpace(doc, i+1)
				if i < len(doc) && doc[i] == '}' {
					open = open[:len(open)-1]
					i++
					expectValue = false
					continue
				}
				var ok bool
				if i, ok = objectKey(doc, i); !ok {
					return false
				}
				continue // the member's value
			case c == '[':
				if len(open) == maxJSONDepth {
					return false
				}
				open = append(open, '[')
				i = skipSpace(doc, i+1)
				if i < len(doc) && doc[i] == ']' {
					open = open[:len(open)-1]
					i++
					expectValue = false
				}
				continue
			case c == '"':
				var ok bool
				if i, ok = validString(doc, i); !ok {
					return false
				}
			case c == 't':
				if !hasLiteral(doc, i, "true") {
					return false
				}
				i += 4
			case c == 'f':
				if !hasLiteral(doc, i, "false") {
					return false
				}
				i += 5
			case c == 'n':
				if !hasLiteral(doc, i, "null") {
					return false
				}
				i += 4
			case c == '-' || (c >= '0' && c <= '9'):
				var ok bool
				if i, ok = validNumber(doc, i); !ok {
					return false
				}
			default:
				return false
			}
			expectValue = false
			continue
		}
		if len(open) == 0 {
			return i == len(doc)
		}
		if i >= len(doc) {
			return false
		}
		top := open[len(open)-1]
		switch c := doc[i]; {
		case c == ',':
			i++
			expectValue = true
			if top == '{' {
				var ok bool
				if i, ok = objectKey(doc, skipSpace(doc, i)); !ok {
					return false
				}
			}
		case (c == '}' && top == '{') || (c == ']' && top == '['):
			open = open[:len(open)-1]
			i++
		default:
			return false
		}
	}
}

// maxJSONDepth is encoding/json's nesting limit: deeper documents are
// invalid there, so they are here.
const maxJSONDepth = 10000

// objectKey checks a member's key and colon at doc[i] and returns the index
// just past the colon.
func objectKey(doc []byte, i int) (int, bool) {
	if i >= len(doc) || doc[i] != '"' {
		return i, false
	}
	i, ok := validString(doc, i)
	if !ok {
		return i, false
	}
	i = skipSpace(doc, i)
	if i >= len(doc) || doc[i] != ':' {
		return i, false
	}
	return i + 1, true
}

func hasLiteral(doc []byte, i int, lit string) bool {
	return len(doc)-i >= len(lit) && string(doc[i:i+len(lit)]) == lit
}

// Bit tricks for eight bytes at once (the word is read little-endian, so
// the lowest flagged byte is the first in the document; bytes above a real
// match may be flagged falsely, which only the lowest one matters for).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specialBytes flags each byte of w that ends the plain run of a string:
// a quote, a backslash or a control character (< 0x20).
func specialBytes(w uint64) uint64 {
	quote := w ^ (ones * '"')
	slash := w ^ (ones * '\\')
	return ((quote - ones) &^ quote & highs) |
		((slash - ones) &^ slash & highs) |
		((w - ones*0x20) &^ w & highs)
}

// validString checks the JSON string starting at the quote doc[i] and
// returns the index just past its closing quote. Like encoding/json it does
// not require valid UTF-8 (invalid bytes become U+FFFD when decoded).
func validString(doc []byte, i int) (int, bool) {
	i++
	for {
		for len(doc)-i >= 8 {
			m := specialBytes(binary.LittleEndian.Uint64(doc[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(doc) && doc[i] != '"' && doc[i] != '\\' && doc[i] >= 0x20 {
			i++
		}
		if i >= len(doc) {
			return i, false
		}
		switch doc[i] {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(doc) {
				return i, false
			}
			switch doc[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(doc)-i < 6 || !isHex(doc[i+2]) || !isHex(doc[i+3]) || !isHex(doc[i+4]) || !isHex(doc[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		default: // a control character
			return i, false
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// validNumber checks the number at doc[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(doc []byte, i int) (int, bool) {
	if doc[i] == '-' {
		i++
	}
	switch {
	case i < len(doc) && doc[i] == '0':
		i++
	case i < len(doc) && doc[i] >= '1' && doc[i] <= '9':
		i = skipDigits(doc, i+1)
	default:
		return i, false
	}
	if i < len(doc) && doc[i] == '.' {
		j := skipDigits(doc, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(doc) && (doc[i] == 'e' || doc[i] == 'E') {
		i++
		if i < len(doc) && (doc[i] == '+' || doc[i] == '-') {
			i++
		}
		j := skipDigits(doc, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func skipDigits(doc []byte, i int) int {
	for i < len(doc) && doc[i] >= '0' && doc[i] <= '9' {
		i++
	}
	return i
}
