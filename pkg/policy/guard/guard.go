// Package guard is the request guard of the standalone gateway: per-route
// limits on what a request may look like (size, shape, length, content),
// configured by the RequestGuard kind (kind.go) and evaluated before
// authentication, quotas and the Director, so that a request that breaks
// one never costs a key lookup, a quota reservation or GPU time.
//
// Every limit is optional. The checks run cheapest first, reusing the
// body as pkg/openai.ParseRequest parsed it (the prompt text, the message
// count, max_tokens); only the strict shape validator reads the body
// again, in one allocation-free pass. A rejection is an OpenAI-style error
// whose message and X-Gateway-Guard-Rule header name the rule:
//
//	rule               status  what
//	max-headers        431     more header lines than spec.maxHeaders
//	max-header-size    431     header names and values over spec.maxHeaderSize
//	max-body-size      413     body over spec.maxBodySize
//	schema             400     a known OpenAI field of the wrong JSON type (spec.validate)
//	max-messages       413     more chat messages than spec.maxMessages
//	max-tokens         422     max_tokens over spec.maxTokens.limit (action Reject)
//	max-prompt-tokens  413     prompt over spec.maxPromptTokens (igw's token estimate)
//	<deny rule name>   422     the prompt matches a deny rule in mode Block
//
// A deny rule in mode Log lets the request through and is counted and
// logged. Deny rules are a tripwire for known prompt-injection phrasing,
// not a defence: see docs/security.md.
package guard

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"regexp/syntax"
	"strconv"
	"sync"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/openai"
)

// HeaderRule names the rule that rejected a request, on the response.
const HeaderRule = "X-Gateway-Guard-Rule"

// Built-in rule names (RuleNames); a deny rule may not take one.
const (
	RuleMaxHeaders      = "max-headers"
	RuleMaxHeaderSize   = "max-header-size"
	RuleMaxBodySize     = "max-body-size"
	RuleSchema          = "schema"
	RuleMaxMessages     = "max-messages"
	RuleMaxTokens       = "max-tokens"
	RuleMaxPromptTokens = "max-prompt-tokens"
)

// Modes a rule hit is counted under.
const (
	ModeBlock = "block"
	ModeLog   = "log"
	ModeClamp = "clamp"
)

// Observer counts rule hits (telemetry.Metrics implements it). guard is
// namespace/name of the RequestGuard.
type Observer interface {
	GuardHit(guard, rule, mode string)
}

// Guard is one compiled RequestGuard. It is immutable and safe for
// concurrent use; a reload compiles a new one.
type Guard struct {
	name            string
	maxHeaders      int
	maxHeaderBytes  int64
	maxBodyBytes    int64
	validator       *openai.Validator // nil: no shape validation
	maxMessages     int
	maxTokens       int
	clampMaxTokens  bool
	maxPromptTokens int
	rules           []denyRule
	obs             Observer
	log             *slog.Logger
	// needFold says some rule's prefilter compares against the folded
	// prompt; folded holds the buffers for it.
	needFold bool
	folded   sync.Pool
}

type denyRule struct {
	name string
	re   *regexp.Regexp
	log  bool
	// pre, when set, is a literal every match contains (see prefilter.go).
	pre *literal
}

// Options are a Guard's dependencies.
type Options struct {
	// Validator checks request shapes (shared by every guard; built once).
	Validator *openai.Validator
	// Observer counts hits; nil counts nothing.
	Observer Observer
	// Logger receives Log-mode hits; nil logs nothing.
	Logger *slog.Logger
}

// New compiles a RequestGuard. Its configuration was validated at load;
// an error here (a pattern that does not compile) still fails the load.
func New(g *RequestGuard, o Options) (*Guard, error) {
	s := &g.Spec
	out := &Guard{name: config.NamespacedName(g.Namespace, g.Name), obs: o.Observer, log: o.Logger}
	if out.log == nil {
		out.log = slog.New(slog.DiscardHandler)
	}
	if s.MaxHeaders != nil {
		out.maxHeaders = int(*s.MaxHeaders)
	}
	if s.MaxHeaderSize != nil {
		out.maxHeaderBytes = s.MaxHeaderSize.Value()
	}
	if s.MaxBodySize != nil {
		out.maxBodyBytes = s.MaxBodySize.Value()
	}
	if s.Validate {
		out.validator = o.Validator
		if out.validator == nil {
			out.validator = openai.NewValidator()
		}
	}
	if s.MaxMessages != nil {
		out.maxMessages = int(*s.MaxMessages)
	}
	if s.MaxPromptTokens != nil {
		out.maxPromptTokens = int(*s.MaxPromptTokens)
	}
	if m := s.MaxTokens; m != nil {
		out.maxTokens, out.clampMaxTokens = int(m.Limit), m.Action == MaxTokensClamp
	}
	for i, r := range s.DenyRules {
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("RequestGuard %s: spec.denyRules[%d].pattern: %w", out.name, i, err)
		}
		rule := denyRule{name: r.Name, re: re, log: r.Mode == DenyLog}
		if tree, err := syntax.Parse(r.Pattern, syntax.Perl); err == nil {
			if lit, ok := requiredLiteral(tree); ok {
				rule.pre = &lit
				out.needFold = out.needFold || lit.fold
			}
		}
		out.rules = append(out.rules, rule)
	}
	return out, nil
}

// Name is the guard's namespace/name.
func (g *Guard) Name() string { return g.name }

// NeedsPromptTokens reports whether Check reads Request.PromptTokens, so
// that the caller counts tokens only when someone needs them.
func (g *Guard) NeedsPromptTokens() bool { return g.maxPromptTokens > 0 }

// Request is what the guard inspects: everything already read and parsed
// by the gateway.
type Request struct {
	Header http.Header
	Body   []byte
	Parsed *openai.Parsed
	// PromptTokens is openai.CountTokens of Parsed.Prompt; required when
	// NeedsPromptTokens.
	PromptTokens int
}

// Violation is a rejected request: the rule and the error to send.
type Violation struct {
	Rule string
	Err  *openai.Error
}

// Check applies the guard to req. It returns the body to forward (the
// same slice, or a copy with max_tokens clamped, in which case req.Parsed
// is updated to match), or the first violated rule.
func (g *Guard) Check(req *Request) ([]byte, *Violation) {
	if g.maxHeaders > 0 || g.maxHeaderBytes > 0 {
		n, size := 0, int64(0)
		for k, vs := range req.Header {
			n += len(vs)
			for _, v := range vs {
				size += int64(len(k) + len(v))
			}
		}
		if g.maxHeaders > 0 && n > g.maxHeaders {
			return nil, g.reject(RuleMaxHeaders, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("%d header lines; at most %d are allowed", n, g.maxHeaders))
		}
		if g.maxHeaderBytes > 0 && size > g.maxHeaderBytes {
			return nil, g.reject(RuleMaxHeaderSize, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("%d bytes of headers; at most %d are allowed", size, g.maxHeaderBytes))
		}
	}
	if g.maxBodyBytes > 0 && int64(len(req.Body)) > g.maxBodyBytes {
		return nil, g.reject(RuleMaxBodySize, http.StatusRequestEntityTooLarge, fmt.Sprintf("a body of %d bytes; at most %d are allowed", len(req.Body), g.maxBodyBytes))
	}
	p := req.Parsed
	if g.validator != nil {
		if e := g.validator.Validate(p.Kind, req.Body); e != nil {
			v := g.reject(RuleSchema, http.StatusBadRequest, e.Message)
			v.Err.Param = e.Param
			return nil, v
		}
	}
	if g.maxMessages > 0 && p.Messages > g.maxMessages {
		return nil, g.reject(RuleMaxMessages, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d messages; at most %d are allowed", p.Messages, g.maxMessages))
	}
	body := req.Body
	if g.maxTokens > 0 {
		switch {
		case g.clampMaxTokens && (p.MaxTokens == 0 || p.MaxTokens > g.maxTokens):
			body = p.ClampMaxTokens(body, g.maxTokens)
			g.hit(RuleMaxTokens, ModeClamp)
		case !g.clampMaxTokens && p.MaxTokens > g.maxTokens:
			v := g.reject(RuleMaxTokens, http.StatusUnprocessableEntity, fmt.Sprintf("max_tokens of %d; at most %d are allowed", p.MaxTokens, g.maxTokens))
			v.Err.Param = "max_tokens"
			return nil, v
		}
	}
	if g.maxPromptTokens > 0 && req.PromptTokens > g.maxPromptTokens {
		return nil, g.reject(RuleMaxPromptTokens, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("a prompt of about %d tokens; at most %d are allowed", req.PromptTokens, g.maxPromptTokens))
	}
	if len(g.rules) == 0 {
		return body, nil
	}
	var folded []byte
	if g.needFold {
		bp, _ := g.folded.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		*bp = foldPrompt((*bp)[:0], p.Prompt)
		folded = *bp
		defer g.folded.Put(bp)
	}
	for i := range g.rules {
		r := &g.rules[i]
		if r.pre != nil && !r.pre.mayMatch(p.Prompt, folded) {
			continue
		}
		if !r.re.Match(p.Prompt) {
			continue
		}
		if r.log {
			g.hit(r.name, ModeLog)
			g.log.Info("request guard deny rule matched (log mode)", "guard", g.name, "rule", r.name, "model", p.Model)
			continue
		}
		return nil, g.reject(r.name, http.StatusUnprocessableEntity, "the prompt matches a deny rule")
	}
	return body, nil
}

// reject builds a violation and counts it.
func (g *Guard) reject(rule string, status int, detail string) *Violation {
	g.hit(rule, ModeBlock)
	return &Violation{Rule: rule, Err: openai.NewError(status, openai.ErrTypeInvalidRequest,
		"request guard "+strconv.Quote(g.name)+" rule "+strconv.Quote(rule)+": "+detail)}
}

func (g *Guard) hit(rule, mode string) {
	if g.obs != nil {
		g.obs.GuardHit(g.name, rule, mode)
	}
}
