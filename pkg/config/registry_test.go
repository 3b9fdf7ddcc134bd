package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The loader with kinds declared by the test: it knows nothing of igw's.

// widget is a named kind with a default and a reference to a gadget.
type widget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Size   int32  `json:"size,omitempty"`
		Gadget string `json:"gadget,omitempty"`
		File   string `json:"file,omitempty"`
		Body   []byte `json:"-"`
	} `json:"spec,omitempty"`
}

// gadget is a singleton kind with a default object.
type gadget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Color string `json:"color,omitempty"`
	} `json:"spec,omitempty"`
}

// sized is implemented by widgets, to show All over an interface.
type sized interface{ size() int32 }

func (w *widget) size() int32 { return w.Spec.Size }

func testKinds(checked *[]string) []Kind {
	return []Kind{
		{
			Kind: "Widget", APIVersions: []string{"test.igw.dev/v1", "test.igw.dev/v2"}, Named: true,
			New: func() Object { return new(widget) },
			Validate: func(o Object, f *Fields) {
				w := o.(*widget)
				if w.Spec.Size == 0 {
					w.Spec.Size = 1
				}
				if w.Spec.Size < 0 {
					f.Errorf("spec.size", "must be positive, not %d", w.Spec.Size)
				}
				if w.Spec.File != "" {
					data, err := f.ReadFile(w.Spec.File)
					if err != nil {
						f.Error("spec.file", err)
					}
					w.Spec.Body = data
				}
			},
			Check: func(c *Config, r *Report) {
				*checked = append(*checked, "Widget")
				for _, w := range All[*widget](c) {
					if w.Spec.Gadget != "" && c.Get("Gadget", w.Namespace, w.Spec.Gadget) == nil {
						r.In(w).Errorf("spec.gadget", "Gadget %q not found", w.Spec.Gadget)
					}
				}
			},
		},
		{
			Kind: "Gadget", APIVersions: []string{"test.igw.dev/v1"}, Singleton: true,
			New: func() Object { return new(gadget) },
			Default: func() Object {
				g := &gadget{}
				g.Name, g.Spec.Color = "default", "grey"
				return g
			},
			Check: func(*Config, *Report) { *checked = append(*checked, "Gadget") },
		},
		{Kind: "Blob", APIVersions: []string{"test.igw.dev/v1"}, Singleton: true},
	}
}

func TestSchema_ParsesDeclaredKindsOnly(t *testing.T) {
	var checked []string
	s := NewSchema(testKinds(&checked)...)
	cfg, err := s.Parse("t.yaml", []byte(`apiVersion: test.igw.dev/v1
kind: Widget
metadata: {name: a}
---
apiVersion: test.igw.dev/v2
kind: Widget
metadata: {name: b, namespace: prod}
spec: {size: 3}
---
apiVersion: test.igw.dev/v1
kind: Blob
anything: [goes, here]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(checked, ","); got != "Widget,Gadget" {
		t.Errorf("checks ran in order %s, want the schema's", got)
	}
	ws := All[*widget](cfg)
	if len(ws) != 2 || ws[0].Namespace != DefaultNamespace || ws[0].Spec.Size != 1 || ws[1].Spec.Size != 3 {
		t.Fatalf("widgets = %+v", ws)
	}
	if w := Find[*widget](cfg, "", "a"); w != ws[0] {
		t.Errorf("Find(default/a) = %v", w)
	}
	if w := Find[*widget](cfg, "default", "b"); w != nil {
		t.Errorf("Find(default/b) = %v, want nil (b is in prod)", w)
	}
	if o := cfg.Get("Widget", "prod", "b"); o != ws[1] {
		t.Errorf("Get(Widget, prod/b) = %v", o)
	}
	if n := len(All[sized](cfg)); n != 2 {
		t.Errorf("All over an interface found %d", n)
	}
	g, ok := First[*gadget](cfg)
	if !ok || g.Spec.Color != "grey" || g.Namespace != DefaultNamespace {
		t.Errorf("default gadget = %+v, %v", g, ok)
	}
	raw := cfg.Raw("Blob")
	if raw == nil || string(raw.Data) != "apiVersion: test.igw.dev/v1\nkind: Blob\nanything: [goes, here]" || raw.Source != "t.yaml: document 3 (Blob)" {
		t.Errorf("raw = %+v", raw)
	}
	if cfg.Raw("Widget") != nil {
		t.Error("Raw of an object kind")
	}

	_, err = s.Parse("u.yaml", []byte("apiVersion: test.igw.dev/v1\nkind: Route\nmetadata: {name: r}\n"))
	if want := `u.yaml: document 1 (Route "r"): kind: unknown kind "Route"; want one of Widget, Gadget, Blob`; err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

func TestSchema_ChecksRunOnlyOnValidDocuments(t *testing.T) {
	var checked []string
	s := NewSchema(testKinds(&checked)...)
	_, err := s.Parse("t.yaml", []byte("apiVersion: test.igw.dev/v1\nkind: Widget\nmetadata: {name: a}\nspec: {size: -1, gadget: nope}\n"))
	if err == nil || err.Error() != `t.yaml: document 1 (Widget "a"): spec.size: must be positive, not -1` {
		t.Errorf("error = %v", err)
	}
	if len(checked) != 0 {
		t.Errorf("checks ran on an invalid file: %v", checked)
	}
	_, err = s.Parse("t.yaml", []byte("apiVersion: test.igw.dev/v1\nkind: Gadget\n---\napiVersion: test.igw.dev/v1\nkind: Widget\nmetadata: {name: a}\nspec: {gadget: nope}\n"))
	if err == nil || err.Error() != `t.yaml: document 2 (Widget "a"): spec.gadget: Gadget "nope" not found` {
		t.Errorf("error = %v", err)
	}
}

func TestSchema_ReadFileRecordsSideFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "body.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: test.igw.dev/v1\nkind: Widget\nmetadata: {name: a}\nspec: {file: body.txt}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var checked []string
	cfg, err := NewSchema(testKinds(&checked)...).Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := Find[*widget](cfg, "", "a"); string(w.Spec.Body) != "hello" {
		t.Errorf("body = %q", w.Spec.Body)
	}
	if len(cfg.SideFiles) != 1 || cfg.SideFiles[0].Path != filepath.Join(dir, "body.txt") || cfg.SideFiles[0].Digest != hashOf([]byte("hello")) {
		t.Errorf("side files = %+v", cfg.SideFiles)
	}
}

func TestNewSchema_RejectsInconsistentKinds(t *testing.T) {
	newObj := func() Object { return new(widget) }
	for name, kinds := range map[string][]Kind{
		"twice":              {{Kind: "A", APIVersions: []string{"v1"}}, {Kind: "A", APIVersions: []string{"v1"}}},
		"no name":            {{APIVersions: []string{"v1"}}},
		"no apiVersion":      {{Kind: "A"}},
		"raw and validated":  {{Kind: "A", APIVersions: []string{"v1"}, Validate: func(Object, *Fields) {}}},
		"default, not once":  {{Kind: "A", APIVersions: []string{"v1"}, New: newObj, Default: newObj}},
		"raw with a default": {{Kind: "A", APIVersions: []string{"v1"}, Singleton: true, Default: newObj}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewSchema accepted it")
				}
			}()
			NewSchema(kinds...)
		})
	}
}

func TestDecodeYAML_IsStrict(t *testing.T) {
	var v struct {
		Keys []struct {
			ID string `json:"id"`
		} `json:"keys"`
	}
	if found, problems := DecodeYAML([]byte("keys: [{id: a}]\n"), &v); !found || problems != nil || v.Keys[0].ID != "a" {
		t.Errorf("DecodeYAML = %v, %v, %+v", found, problems, v)
	}
	if _, problems := DecodeYAML([]byte("keys: [{id: a, idd: b}]\n"), &v); strings.Join(problems, ";") != "keys[0].idd: unknown field" {
		t.Errorf("problems = %q", problems)
	}
	if found, problems := DecodeYAML([]byte("# nothing\n"), &v); found || problems != nil {
		t.Errorf("empty: %v, %v", found, problems)
	}
}
