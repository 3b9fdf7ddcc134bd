package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
)

// Load reads and parses the standalone configuration file at path. Errors
// name path as the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a standalone configuration: a YAML stream of documents
// separated by "---" lines, each one resource (see the package doc). name
// is used in error messages only. Every problem found is reported, joined
// with errors.Join; each is an *Error. On error the Config is nil: a
// half-valid configuration is never served.
func Parse(name string, data []byte) (*Config, error) {
	p := &parser{file: name}
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
	file  string
	index int // non-empty documents seen so far
	errs  errorList
	docs  []parsedDoc
	side  []SideFile // files read by readFile
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

// parsedDoc is one decoded, defaulted and individually validated object.
type parsedDoc struct {
	ref docRef
	obj any // *v1.InferencePool, *Gateway, ..., or epcDoc
}

// epcDoc is an EndpointPickerConfig kept as written.
type epcDoc struct {
	raw []byte
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

// kindSpec describes one accepted kind.
type kindSpec struct {
	apiVersions []string
	newObj      func() any // nil for kinds kept raw
	named       bool       // metadata.name is required
}

// kinds is the table of accepted kinds. It is a function, not a package
// variable, so that it cannot be modified.
func kinds(kind string) (kindSpec, bool) {
	switch kind {
	case KindInferencePool:
		return kindSpec{[]string{v1.GroupVersion.String()}, func() any { return new(v1.InferencePool) }, true}, true
	case KindInferenceObjective:
		return kindSpec{[]string{v1alpha2.GroupVersion.String()}, func() any { return new(v1alpha2.InferenceObjective) }, true}, true
	case KindInferenceModelRewrite:
		return kindSpec{[]string{v1alpha2.GroupVersion.String()}, func() any { return new(v1alpha2.InferenceModelRewrite) }, true}, true
	case KindEndpointPickerConfig:
		return kindSpec{[]string{EndpointPickerConfigAPIVersion, EndpointPickerConfigAltAPIVersion}, nil, false}, true
	case KindGateway:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(Gateway) }, false}, true
	case KindModelServer:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(ModelServer) }, true}, true
	case KindRoute:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(Route) }, true}, true
	case KindAPIKeys:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(APIKeys) }, true}, true
	case KindAuthPolicy:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(AuthPolicy) }, false}, true
	case KindRequestGuard:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(RequestGuard) }, true}, true
	case KindQuotaPolicy:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(QuotaPolicy) }, true}, true
	case KindQuotaStore:
		return kindSpec{[]string{IGWAPIVersion}, func() any { return new(QuotaStore) }, false}, true
	}
	return kindSpec{}, false
}

const acceptedKinds = "InferencePool, InferenceObjective, InferenceModelRewrite, EndpointPickerConfig, Gateway, ModelServer, Route, APIKeys, AuthPolicy, RequestGuard, QuotaPolicy, QuotaStore"

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
		p.errs.addf(ref, "kind", "required; one of %s", acceptedKinds)
		return
	case apiVersion == "":
		p.errs.addf(ref, "apiVersion", "required")
		return
	}
	spec, ok := kinds(kind)
	if !ok {
		p.errs.addf(ref, "kind", "unknown kind %q; want one of %s", kind, acceptedKinds)
		return
	}
	if !contains(spec.apiVersions, apiVersion) {
		p.errs.addf(ref, "apiVersion", "kind %s needs apiVersion %s, not %q", kind, strings.Join(spec.apiVersions, " or "), apiVersion)
		return
	}
	if spec.newObj == nil {
		p.docs = append(p.docs, parsedDoc{ref: ref, obj: &epcDoc{raw: bytes.TrimSpace(raw.data)}})
		return
	}

	out := spec.newObj()
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
	v2 := validator{ref: ref, errs: &p.errs}
	switch o := out.(type) {
	case *v1.InferencePool:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.pool(o)
	case *v1alpha2.InferenceObjective:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.objective(o)
	case *v1alpha2.InferenceModelRewrite:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.rewrite(o)
	case *Gateway:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.gateway(o)
	case *ModelServer:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.modelServer(o)
	case *Route:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.route(o)
	case *APIKeys:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.apiKeys(o, p.readFile)
	case *AuthPolicy:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.authPolicy(o, p.readFile)
	case *RequestGuard:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.requestGuard(o)
	case *QuotaPolicy:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.quotaPolicy(o)
	case *QuotaStore:
		v2.meta(&o.ObjectMeta, spec.named)
		v2.quotaStore(o)
	}
	p.docs = append(p.docs, parsedDoc{ref: ref, obj: out})
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// build assembles the Config from the decoded documents, reporting the
// singletons that appear twice.
func (p *parser) build() *Config {
	cfg := &Config{Source: p.file}
	// first remembers the first document of each kind that may appear
	// once; first(d) reports whether d is it, and otherwise names it in
	// the error for d.
	seen := map[string]*docRef{}
	first := func(d *parsedDoc, kind string) bool {
		if prev, ok := seen[kind]; ok {
			p.errs.addf(d.ref, "", "only one %s is allowed; the first is document %d", kind, prev.index)
			return false
		}
		seen[kind] = &d.ref
		return true
	}
	for i := range p.docs {
		d := &p.docs[i]
		switch o := d.obj.(type) {
		case *v1.InferencePool:
			cfg.Pools = append(cfg.Pools, o)
		case *v1alpha2.InferenceObjective:
			cfg.Objectives = append(cfg.Objectives, o)
		case *v1alpha2.InferenceModelRewrite:
			cfg.Rewrites = append(cfg.Rewrites, o)
		case *ModelServer:
			cfg.ModelServers = append(cfg.ModelServers, o)
		case *Route:
			cfg.Routes = append(cfg.Routes, o)
		case *APIKeys:
			cfg.APIKeys = append(cfg.APIKeys, o)
		case *RequestGuard:
			cfg.Guards = append(cfg.Guards, o)
		case *QuotaPolicy:
			cfg.Quotas = append(cfg.Quotas, o)
		case *AuthPolicy:
			if first(d, KindAuthPolicy) {
				cfg.AuthPolicy = o
			}
		case *QuotaStore:
			if first(d, KindQuotaStore) {
				cfg.QuotaStore = o
			}
		case *Gateway:
			if first(d, KindGateway) {
				cfg.Gateway = o
			}
		case *epcDoc:
			if first(d, KindEndpointPickerConfig) {
				cfg.EndpointPickerConfig = o.raw
				cfg.EndpointPickerConfigSource = (&Error{File: d.ref.file, Document: d.ref.index, Kind: d.ref.kind}).location()
			}
		}
	}
	if cfg.Gateway == nil {
		gw := &Gateway{}
		gw.APIVersion, gw.Kind = IGWAPIVersion, KindGateway
		gw.Namespace = DefaultNamespace
		defaultGateway(gw)
		cfg.Gateway = gw
	}
	if cfg.QuotaStore == nil {
		qs := &QuotaStore{}
		qs.APIVersion, qs.Kind = IGWAPIVersion, KindQuotaStore
		qs.Namespace = DefaultNamespace
		defaultQuotaStore(&qs.Spec)
		cfg.QuotaStore = qs
	}
	return cfg
}
