package openai

import "strconv"

// ClampMaxTokens returns body with every output cap (max_completion_tokens,
// max_tokens, max_output_tokens) above limit lowered to limit, or, when the
// body has none, with "max_tokens": limit added. It patches bytes like
// WithModel, keeps p's offsets valid for the returned body (so WithModel
// still works on it) and sets p.MaxTokens. body must be the body p was
// parsed from; when nothing needs to change it is returned as is.
func (p *Parsed) ClampMaxTokens(body []byte, limit int) []byte {
	if limit < 0 {
		limit = 0
	}
	value := strconv.AppendInt(nil, int64(limit), 10)
	found := false
	for _, key := range [...]string{"max_completion_tokens", "max_tokens", "max_output_tokens"} {
		vs, ve, ok := topLevelValue(body, key)
		if !ok {
			continue
		}
		found = true
		if n, isInt := intValue(body[vs:ve]); !isInt || n == nil || *n <= limit {
			continue // null or already within the limit
		}
		body = p.patch(body, vs, ve, value)
	}
	if !found {
		i := skipSpace(body, 0)
		insert := append([]byte(`"max_tokens":`), value...)
		if rest := skipSpace(body, i+1); rest < len(body) && body[rest] != '}' {
			insert = append(insert, ',')
		}
		body = p.patch(body, i+1, i+1, insert)
	}
	p.MaxTokens = limit
	return body
}

// patch replaces body[start:end] with repl in a new slice and shifts the
// offsets p keeps into the body.
func (p *Parsed) patch(body []byte, start, end int, repl []byte) []byte {
	out := make([]byte, 0, len(body)-(end-start)+len(repl))
	out = append(out, body[:start]...)
	out = append(out, repl...)
	out = append(out, body[end:]...)
	delta := len(repl) - (end - start)
	if p.modelEnd > 0 && p.modelStart >= end {
		p.modelStart += delta
		p.modelEnd += delta
	}
	if p.inputEnd > 0 && p.inputStart >= end {
		p.inputStart += delta
		p.inputEnd += delta
	}
	return out
}
