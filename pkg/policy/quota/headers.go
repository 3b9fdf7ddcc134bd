package quota

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/igw-dev/igw/pkg/director"
)

// The OpenAI rate-limit headers (OpenAI sends them as
// x-ratelimit-limit-requests and so on; header names are case-insensitive).
// They are written in Go's canonical form so that http.Header.Get finds
// them and setting them costs no canonicalization.
const (
	HeaderLimitRequests     = "X-Ratelimit-Limit-Requests"
	HeaderLimitTokens       = "X-Ratelimit-Limit-Tokens"
	HeaderRemainingRequests = "X-Ratelimit-Remaining-Requests"
	HeaderRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	HeaderResetRequests     = "X-Ratelimit-Reset-Requests"
	HeaderResetTokens       = "X-Ratelimit-Reset-Tokens"
)

// SetHeaders writes the x-ratelimit-* headers (and, on rejection,
// Retry-After) for d. Among several request limits (and among several token
// limits: input, output and total count as tokens) the headers describe the
// tightest: the one with the least remaining, so a client that paces itself
// by them stays within every limit. Reset is how long until the window has
// forgotten all it counts now, in OpenAI's duration format ("1s", "6m0s").
func (d *Decision) SetHeaders(h http.Header) {
	var req, tok *Usage
	for i := range d.usage {
		u := &d.usage[i]
		p := &req
		if u.Limit.Metric.isTokens() {
			p = &tok
		}
		if *p == nil || tighter(u, *p) {
			*p = u
		}
	}
	// One backing array for all values: one allocation, not seven.
	vals := make([]string, 0, 7)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if req != nil {
		set(HeaderLimitRequests, strconv.FormatInt(req.Max, 10))
		set(HeaderRemainingRequests, strconv.FormatInt(req.Remaining(), 10))
		set(HeaderResetRequests, FormatReset(req.ResetIn))
	}
	if tok != nil {
		set(HeaderLimitTokens, strconv.FormatInt(tok.Max, 10))
		set(HeaderRemainingTokens, strconv.FormatInt(tok.Remaining(), 10))
		set(HeaderResetTokens, FormatReset(tok.ResetIn))
	}
	if !d.Admitted && d.RetryAfter > 0 {
		set(director.HeaderRetryAfter, director.RetryAfterValue(d.RetryAfter))
	}
}

// tighter: less remaining, or as much remaining of a smaller limit.
func tighter(a, b *Usage) bool {
	ra, rb := a.Remaining(), b.Remaining()
	if ra != rb {
		return ra < rb
	}
	return a.Max < b.Max
}

// FormatReset renders a duration as OpenAI's x-ratelimit-reset-* headers
// do: Go's duration format, to the millisecond below a minute ("20ms",
// "1.5s") and to the second above ("6m0s").
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Message is the text of the 429 a refused request gets: which limit, how
// much it asked for and what is left, in the shape of OpenAI's rate-limit
// messages.
func (d *Decision) Message() string {
	if d.Refused == nil {
		return "rate limit exceeded"
	}
	var used int64
	var lim int64 = d.Refused.Max
	for _, u := range d.usage {
		if u.Limit == d.Refused {
			used, lim = u.Used, u.Max
			break
		}
	}
	if d.RetryAfter == 0 {
		return fmt.Sprintf("Request too large for quota %s: limit %d %s per %s, requested %d. Reduce the prompt or max_tokens.",
			d.Refused.Name, lim, d.Refused.Metric, d.Refused.Window, d.Requested)
	}
	return fmt.Sprintf("Rate limit reached for quota %s: limit %d %s per %s, used %d, requested %d. Please try again in %s.",
		d.Refused.Name, lim, d.Refused.Metric, d.Refused.Window, used, d.Requested, FormatReset(d.RetryAfter))
}
