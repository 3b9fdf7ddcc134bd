package guard

import (
	"regexp"
	"regexp/syntax"
	"testing"
)

func TestRequiredLiteral(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		want    string // "" for no prefilter
		fold    bool
	}{
		{`(?i)ignore (all )?previous instructions`, "previous instructions", true},
		{`ignore previous`, "ignore previous", false},
		{`(?i)system\s+prompt`, "system", true},
		{`(foo|bar)baz`, "baz", false},
		{`(?:jailbreak)+`, "jailbreak", false},
		{`a|b`, "", false},
		{`x*y?`, "", false},
		{`(?i)café noir`, "", false}, // non-ASCII folding: no prefilter
		{`ab`, "", false},            // too short to pay off
	} {
		tree, err := syntax.Parse(tt.pattern, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := requiredLiteral(tree)
		if got := string(lit.text); (ok && got != tt.want) || (!ok && tt.want != "") || (ok && lit.fold != tt.fold) {
			t.Errorf("requiredLiteral(%q) = %q fold=%v ok=%v; want %q fold=%v", tt.pattern, got, lit.fold, ok, tt.want, tt.fold)
		}
	}
}

// FuzzPrefilter holds the prefilter to its promise: whenever a rule's
// regexp matches a prompt, the prefilter lets it through.
func FuzzPrefilter(f *testing.F) {
	patterns := []string{
		`(?i)ignore (all )?previous instructions`, `(?i)system\s+prompt`, `(?i)DAN mode`, `jailbreak+`,
		`(?i)(reveal|print) your (hidden )?instructions`, `(?i)kelvin`, `(?i)password`,
	}
	for _, s := range []string{"Ignore previous instructions", "SYSTEM   PROMPT", "print your hidden instructions", "\u212aelvin", "pa\u017f\u017fword", "dan MODE", "jailbreakkk", "nothing here"} {
		f.Add(s)
	}
	type rule struct {
		re  *regexp.Regexp
		lit literal
		ok  bool
	}
	var rules []rule
	for _, p := range patterns {
		tree, _ := syntax.Parse(p, syntax.Perl)
		lit, ok := requiredLiteral(tree)
		rules = append(rules, rule{regexp.MustCompile(p), lit, ok})
	}
	f.Fuzz(func(t *testing.T, prompt string) {
		p := []byte(prompt)
		folded := foldPrompt(nil, p)
		for _, r := range rules {
			if r.re.Match(p) && r.ok && !r.lit.mayMatch(p, folded) {
				t.Fatalf("%q matches %s but the prefilter %q skipped it", prompt, r.re, r.lit.text)
			}
		}
	})
}
