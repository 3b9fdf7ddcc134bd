package openai

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file reads values out of a JSON document already known to be valid
// (validJSON), without building a tree: the request path needs a handful
// of fields and the prompt text, and decoding the whole body with
// encoding/json cost more than everything else the gateway does per
// request.

// forEachMember calls fn for every member of the object at doc[i], with the
// member's raw key (quoted) and the value's range. It stops when fn returns
// false. doc must be valid JSON and doc[i] an object.
func forEachMember(doc []byte, i int, fn func(key []byte, vs, ve int) bool) {
	i = skipSpace(doc, i) + 1 // past '{'
	for {
		i = skipSpace(doc, i)
		if i >= len(doc) || doc[i] == '}' {
			return
		}
		if doc[i] == ',' {
			i++
			continue
		}
		ke, _ := skipString(doc, i)
		key := doc[i:ke]
		vs := skipSpace(doc, skipSpace(doc, ke)+1) // past ':'
		ve, _ := skipValue(doc, vs)
		if !fn(key, vs, ve) {
			return
		}
		i = ve
	}
}

// forEachElement calls fn for every element of the array at doc[i].
func forEachElement(doc []byte, i int, fn func(vs, ve int) bool) {
	i = skipSpace(doc, i) + 1 // past '['
	for {
		i = skipSpace(doc, i)
		if i >= len(doc) || doc[i] == ']' {
			return
		}
		if doc[i] == ',' {
			i++
			continue
		}
		ve, _ := skipValue(doc, i)
		if !fn(i, ve) {
			return
		}
		i = ve
	}
}

// appendStringValue appends the decoded contents of the JSON string raw
// (with its quotes) to dst. raw must be a valid JSON string. Invalid UTF-8
// is replaced with U+FFFD byte by byte, as encoding/json does.
func appendStringValue(dst, raw []byte) []byte {
	s := raw[1 : len(raw)-1]
	for i := 0; i < len(s); {
		// The run up to the next escape is copied in one go (plain prompt
		// text is almost all of it).
		end := len(s)
		if k := bytes.IndexByte(s[i:], '\\'); k >= 0 {
			end = i + k
		}
		if end > i {
			dst = appendUTF8(dst, s[i:end])
			i = end
			continue
		}
		i++ // s[i] was a backslash
		switch s[i] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r := hex4(s[i+1:])
			i += 4 // at the escape's last hex digit
			if utf16.IsSurrogate(r) {
				// A pair is two escapes; a lone half is U+FFFD, as in
				// encoding/json.
				pair := utf8.RuneError
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					pair = utf16.DecodeRune(r, hex4(s[i+3:]))
				}
				if pair != utf8.RuneError {
					i += 6
				}
				r = pair
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[i])
		}
		i++
	}
	return dst
}

// appendUTF8 appends run, replacing each invalid byte with U+FFFD.
func appendUTF8(dst, run []byte) []byte {
	if utf8.Valid(run) {
		return append(dst, run...)
	}
	for len(run) > 0 {
		r, size := utf8.DecodeRune(run)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, run[:size]...)
		}
		run = run[size:]
	}
	return dst
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	v, err := strconv.ParseUint(string(b[:4]), 16, 32)
	if err != nil {
		return -1
	}
	return rune(v)
}

// stringValue decodes a JSON string without allocating when it has no
// escapes and is valid UTF-8.
func stringValue(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	plain := true
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(inner)
	}
	return string(appendStringValue(nil, raw))
}

// kindOf classifies the JSON value starting at v[0].
func kindOf(v []byte) byte {
	switch v[0] {
	case '"':
		return 's'
	case '{':
		return 'o'
	case '[':
		return 'a'
	case 't', 'f':
		return 'b'
	case 'n':
		return 'n'
	}
	return 'd' // number
}
