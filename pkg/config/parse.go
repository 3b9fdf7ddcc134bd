package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Load reads and parses the configuration file at path. Errors name path
// as the file.
func (s *Schema) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return s.Parse(path, data)
}

// Parse parses a configuration: a YAML stream of documents separated by
// "---" lines, each one object of a kind of s (see the package doc). name
// is used in error messages only. Every problem found is reported, joined
// with errors.Join; each is an *Error. On error the Config is nil: a
// half-valid configuration is never served.
func (s *Schema) Parse(name string, data []byte) (*Config, error) {
	p := &parser{schema: s, file: name}
	for _, raw := range splitDocuments(data) {
		p.parseDocument(raw)
	}
	if p.index == 0 {
		// Most likely the wrong file or a truncated one; serving defaults
		// with no routes would hide that.
		p.errs.addf(docRef{file: name}, "", "no documents; a configuration needs at least one resource")
	}
	if p.errs.len() > 0 {
		// Cross-references between broken documents would only add noise.
		return nil, p.errs.err()
	}
	cfg := p.build()
	sum := sha256.Sum256(data)
	cfg.Digest = hex.EncodeToString(sum[:])
	cfg.SideFiles = p.side
	p.crossValidate(cfg)
	if p.errs.len() > 0 {
		return nil, p.errs.err()
	}
	return cfg, nil
}

// parser holds the state of one Parse call.
type parser struct {
	schema *Schema
	file   string
	index  int // non-empty documents seen so far
	errs   errorList
	docs   []*document
	side   []SideFile        // files read by readFile
	refs   map[Object]docRef // where each object is, for Report
}

// readFile reads a file a document refers to (a keys file, a JWKS file):
// a relative path is relative to the configuration file's directory, so a
// configuration and its side files move together.
func (p *parser) readFile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.file), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	p.side = append(p.side, SideFile{Path: path, Digest: hashOf(data)})
	return data, nil
}

// rawDoc is one document of the YAML stream before decoding.
type rawDoc struct {
	line int // 1-based line of the file where the document's text starts
	data []byte
}

// splitDocuments cuts a YAML stream at "---" and "..." marker lines. It does
// the splitting itself, rather than through a YAML stream decoder, to know
// where each document starts in the file.
func splitDocuments(data []byte) []rawDoc {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []rawDoc
	cur := rawDoc{line: 1}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, ln := range lines {
		text := bytes.TrimRight(ln, "\r\n")
		if rest, ok := cutMarker(text); ok {
			docs = append(docs, cur)
			cur = rawDoc{line: i + 2}
			if len(bytes.TrimSpace(rest)) > 0 {
				// "--- {inline: document}" starts on the marker's line.
				cur = rawDoc{line: i + 1, data: append(append([]byte(nil), rest...), '\n')}
			}
			continue
		}
		cur.data = append(cur.data, ln...)
	}
	return append(docs, cur)
}

// cutMarker reports whether line is a document marker and returns what
// follows a "---" on the same line.
func cutMarker(line []byte) ([]byte, bool) {
	for _, m := range [][]byte{[]byte("---"), []byte("...")} {
		if !bytes.HasPrefix(line, m) {
			continue
		}
		rest := line[len(m):]
		if len(rest) == 0 {
			return nil, true
		}
		if rest[0] == ' ' || rest[0] == '\t' {
			if m[0] == '.' {
				return nil, len(bytes.TrimSpace(rest)) == 0 || bytes.HasPrefix(bytes.TrimSpace(rest), []byte("#"))
			}
			return rest, true
		}
	}
	return nil, false
}

func (p *parser) parseDocument(raw rawDoc) {
	js, yerr := yaml.YAMLToJSONStrict(raw.data)
	if yerr == nil && bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return // empty or comment-only document
	}
	p.index++
	ref := docRef{file: p.file, index: p.index, line: raw.line}
	if yerr != nil {
		p.errs.add(ref, "", fmt.Errorf("invalid YAML (document starts at line %d): %w", raw.line, yerr))
		return
	}
	v, err := decodeGeneric(js)
	if err != nil {
		p.errs.add(ref, "", fmt.Errorf("invalid YAML (document starts at line %d): %w", raw.line, err))
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		p.errs.addf(ref, "", "must be a mapping with apiVersion and kind, not %s", jsonTypeName(v))
		return
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	ref.kind = kind
	ref.name = metaLabel(obj)

	switch {
	case kind == "":
		p.errs.addf(ref, "kind", "required; one of %s", p.schema.names)
		return
	case apiVersion == "":
		p.errs.addf(ref, "apiVersion", "required")
		return
	}
	k := p.schema.byName[kind]
	if k == nil {
		p.errs.addf(ref, "kind", "unknown kind %q; want one of %s", kind, p.schema.names)
		return
	}
	if !slices.Contains(k.APIVersions, apiVersion) {
		p.errs.addf(ref, "apiVersion", "kind %s needs apiVersion %s, not %q", kind, strings.Join(k.APIVersions, " or "), apiVersion)
		return
	}
	if k.New == nil {
		src := (&Error{File: ref.file, Document: ref.index, Kind: ref.kind}).location()
		p.docs = append(p.docs, &document{kind: kind, ref: ref, raw: &Raw{Data: bytes.TrimSpace(raw.data), Source: src}})
		return
	}

	out := k.New()
	var shapeErrs []shapeError
	checkShape("", obj, reflect.TypeOf(out).Elem(), &shapeErrs)
	for _, se := range shapeErrs {
		p.errs.add(ref, se.field, se.err)
	}
	if len(shapeErrs) > 0 {
		return
	}
	if err := decodeStrict(obj, out); err != nil {
		p.errs.add(ref, "", err)
		return
	}
	f := &Fields{ref: ref, p: p}
	f.meta(out, k.Named)
	if k.Validate != nil {
		k.Validate(out, f)
	}
	p.docs = append(p.docs, &document{kind: kind, ref: ref, obj: out})
}

// metaLabel renders the object's name for error messages: "name", or
// "namespace/name" outside the default namespace.
func metaLabel(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if name == "" {
		return ""
	}
	if ns != "" && ns != DefaultNamespace {
		return ns + "/" + name
	}
	return name
}

// build assembles the Config from the decoded documents, reporting the
// singletons that appear twice and adding the default objects of those
// that do not appear.
func (p *parser) build() *Config {
	cfg := &Config{Source: p.file}
	first := map[string]docRef{} // the first document of each singleton kind
	for _, d := range p.docs {
		if p.schema.byName[d.kind].Singleton {
			if prev, ok := first[d.kind]; ok {
				p.errs.addf(d.ref, "", "only one %s is allowed; the first is document %d", d.kind, prev.index)
				continue
			}
			first[d.kind] = d.ref
		}
		cfg.docs = append(cfg.docs, d)
	}
	for i := range p.schema.kinds {
		k := &p.schema.kinds[i]
		if _, ok := first[k.Kind]; ok || k.Default == nil {
			continue
		}
		obj := k.Default()
		if obj.GetNamespace() == "" {
			obj.SetNamespace(DefaultNamespace)
		}
		cfg.docs = append(cfg.docs, &document{kind: k.Kind, ref: docRef{file: p.file, kind: k.Kind}, obj: obj})
	}
	return cfg
}

// crossValidate checks what no single document can: unique names, then
// each kind's Check (references between documents, and the defaults that
// depend on them).
func (p *parser) crossValidate(cfg *Config) {
	p.refs = make(map[Object]docRef, len(cfg.docs))
	for _, d := range cfg.docs {
		if d.obj != nil {
			p.refs[d.obj] = d.ref
		}
	}
	p.checkUnique(cfg)
	r := &Report{p: p}
	for i := range p.schema.kinds {
		if check := p.schema.kinds[i].Check; check != nil {
			check(cfg, r)
		}
	}
}

// checkUnique reports objects of the same kind with the same namespace and
// name: in Kubernetes the second would overwrite the first, which in a file
// is always a mistake.
func (p *parser) checkUnique(cfg *Config) {
	first := map[string]docRef{}
	for _, d := range cfg.docs {
		if d.obj == nil || !p.schema.byName[d.kind].Named {
			continue
		}
		key := d.kind + "\x00" + d.obj.GetNamespace() + "\x00" + d.obj.GetName()
		if prev, dup := first[key]; dup {
			p.errs.addf(d.ref, "metadata.name", "duplicate %s %q in namespace %q (first defined in document %d)", d.kind, d.obj.GetName(), d.obj.GetNamespace(), prev.index)
			continue
		}
		first[key] = d.ref
	}
}
