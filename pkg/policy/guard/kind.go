package guard

import (
	"fmt"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
)

// KindRequestGuard is the kind of a RequestGuard document.
const KindRequestGuard = "RequestGuard"

// Kind declares the RequestGuard kind for the configuration loader. It is
// a function, not a package variable, so that no caller can change
// another's.
func Kind() config.Kind {
	return config.Kind{
		Kind: KindRequestGuard, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New:      func() config.Object { return new(RequestGuard) },
		Validate: func(o config.Object, f *config.Fields) { validate(o.(*RequestGuard), f) },
	}
}

// Find returns the RequestGuard of cfg with this namespace ("" for the
// default) and name, or nil.
func Find(cfg *config.Config, namespace, name string) *RequestGuard {
	return config.Find[*RequestGuard](cfg, namespace, name)
}

// Guards are the RequestGuards of cfg, in document order.
func Guards(cfg *config.Config) []*RequestGuard { return config.All[*RequestGuard](cfg) }

// RequestGuard (kind RequestGuard, igw.dev/v1alpha1) bounds what a request
// may look like before it costs anything: size, shape, length and content.
// A Route names one in spec.guard. Every limit is optional; a rejection is
// a 400, 413, 422 or 431 whose error message and X-Gateway-Guard-Rule
// header name the rule.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: RequestGuard
//	metadata:
//	  name: public
//	spec:
//	  maxBodySize: 1Mi               # 413 max-body-size
//	  maxMessages: 64                # 413 max-messages
//	  maxPromptTokens: 8000          # 413 max-prompt-tokens (igw's estimate)
//	  maxTokens: {limit: 2048, action: Clamp}  # Reject (422 max-tokens) or Clamp
//	  validate: true                 # 400 schema: types of the known OpenAI fields
//	  maxHeaders: 64                 # 431 max-headers
//	  maxHeaderSize: 16Ki            # 431 max-header-size (names + values)
//	  denyRules:                     # Go regular expressions over the prompt text
//	  - name: ignore-previous
//	    pattern: '(?i)ignore (all )?previous instructions'
//	    mode: Block                  # Block (422) or Log
type RequestGuard struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the guard's limits and rules.
	Spec RequestGuardSpec `json:"spec,omitempty"`
}

// RequestGuardSpec is the limits and rules of a RequestGuard.
type RequestGuardSpec struct {
	// MaxBodySize bounds the body in bytes (a quantity: 1Mi, 1048576). It
	// can only lower the Gateway's maxRequestBodySize.
	MaxBodySize *resource.Quantity `json:"maxBodySize,omitempty"`

	// MaxMessages bounds the messages of a chat completion.
	MaxMessages *int32 `json:"maxMessages,omitempty"`

	// MaxPromptTokens bounds the prompt as igw's tokenizer counts it (an
	// estimate close to Llama-class BPE tokenizers on English).
	MaxPromptTokens *int32 `json:"maxPromptTokens,omitempty"`

	// MaxTokens caps the output the client asks for.
	MaxTokens *MaxTokensGuard `json:"maxTokens,omitempty"`

	// Validate checks the JSON types of the fields OpenAI defines for chat
	// completions and completions (unknown fields are allowed, as vLLM
	// extensions are common) and rejects a mismatch with 400, so that a
	// malformed request never reaches a model server.
	Validate bool `json:"validate,omitempty"`

	// MaxHeaders bounds the number of request header lines.
	MaxHeaders *int32 `json:"maxHeaders,omitempty"`

	// MaxHeaderSize bounds the total size of header names and values.
	MaxHeaderSize *resource.Quantity `json:"maxHeaderSize,omitempty"`

	// DenyRules match regular expressions against the prompt text.
	DenyRules []DenyRule `json:"denyRules,omitempty"`
}

// MaxTokensGuard caps max_tokens (and max_completion_tokens,
// max_output_tokens).
type MaxTokensGuard struct {
	// Limit is the largest output a request may ask for.
	Limit int32 `json:"limit"`

	// Action is Reject (422, the default) or Clamp: the request's value is
	// lowered to Limit in the forwarded body. A request without max_tokens
	// is left alone by Reject and gets Limit under Clamp.
	Action MaxTokensAction `json:"action,omitempty"`
}

// MaxTokensAction is what a guard does with a max_tokens over the limit.
type MaxTokensAction string

// Max-tokens actions.
const (
	MaxTokensReject MaxTokensAction = "Reject"
	MaxTokensClamp  MaxTokensAction = "Clamp"
)

// DenyRule refuses (or only records) requests whose prompt text matches a
// pattern, e.g. known prompt-injection phrases. It is a tripwire, not a
// defence: a determined client rephrases (see docs/security.md).
type DenyRule struct {
	// Name identifies the rule in errors, headers and metrics.
	Name string `json:"name"`

	// Pattern is a Go (RE2) regular expression, matched against the
	// prompt: for chat, every message as "role\ncontent\n".
	Pattern string `json:"pattern"`

	// Mode is Block (422, the default) or Log (counted and logged, the
	// request continues).
	Mode DenyMode `json:"mode,omitempty"`
}

// DenyMode is what a matching deny rule does.
type DenyMode string

// Deny rule modes.
const (
	DenyBlock DenyMode = "Block"
	DenyLog   DenyMode = "Log"
)

// Limits of a RequestGuard's lists and values.
const (
	maxDenyRules   = 256
	maxDenyPattern = 4096
)

// RuleNames returns the names of a RequestGuard's built-in limits, as
// they appear in errors, the X-Gateway-Guard-Rule header and metrics; a
// deny rule may not take one of them. It returns a new slice each call,
// so no caller can change another's.
func RuleNames() []string {
	return []string{RuleMaxBodySize, RuleMaxMessages, RuleMaxPromptTokens, RuleMaxTokens, RuleSchema, RuleMaxHeaders, RuleMaxHeaderSize}
}

// validate defaults and checks one RequestGuard.
func validate(g *RequestGuard, f *config.Fields) {
	s := &g.Spec
	if q := s.MaxBodySize; q != nil && q.Sign() <= 0 {
		f.Errorf("spec.maxBodySize", "must be positive, not %s", q)
	}
	if q := s.MaxHeaderSize; q != nil && q.Sign() <= 0 {
		f.Errorf("spec.maxHeaderSize", "must be positive, not %s", q)
	}
	positiveInt(f, "spec.maxMessages", s.MaxMessages)
	positiveInt(f, "spec.maxPromptTokens", s.MaxPromptTokens)
	positiveInt(f, "spec.maxHeaders", s.MaxHeaders)
	if m := s.MaxTokens; m != nil {
		if m.Limit <= 0 {
			f.Errorf("spec.maxTokens.limit", "must be positive, not %d", m.Limit)
		}
		switch m.Action {
		case "":
			m.Action = MaxTokensReject
		case MaxTokensReject, MaxTokensClamp:
		default:
			f.Errorf("spec.maxTokens.action", "must be %s or %s, not %q", MaxTokensReject, MaxTokensClamp, m.Action)
		}
	}
	if n := len(s.DenyRules); n > maxDenyRules {
		f.Errorf("spec.denyRules", "at most %d rules, not %d", maxDenyRules, n)
	}
	seen := map[string]int{}
	for i := range s.DenyRules {
		r := &s.DenyRules[i]
		rf := fmt.Sprintf("spec.denyRules[%d]", i)
		switch {
		case r.Name == "":
			f.Errorf(rf+".name", "required")
		case slices.Contains(RuleNames(), r.Name):
			f.Errorf(rf+".name", "%q is the name of a built-in limit; choose another", r.Name)
		default:
			f.DNSLabel(rf+".name", r.Name)
		}
		if j, dup := seen[r.Name]; dup {
			f.Errorf(rf+".name", "duplicate rule %q (also denyRules[%d])", r.Name, j)
		}
		seen[r.Name] = i
		switch {
		case r.Pattern == "":
			f.Errorf(rf+".pattern", "required")
		case len(r.Pattern) > maxDenyPattern:
			f.Errorf(rf+".pattern", "at most %d bytes, not %d", maxDenyPattern, len(r.Pattern))
		default:
			if _, err := regexp.Compile(r.Pattern); err != nil {
				f.Errorf(rf+".pattern", "invalid regular expression: %v", err)
			}
		}
		switch r.Mode {
		case "":
			r.Mode = DenyBlock
		case DenyBlock, DenyLog:
		default:
			f.Errorf(rf+".mode", "must be %s or %s, not %q", DenyBlock, DenyLog, r.Mode)
		}
	}
}

func positiveInt(f *config.Fields, field string, n *int32) {
	if n != nil && *n <= 0 {
		f.Errorf(field, "must be positive, not %d", *n)
	}
}
