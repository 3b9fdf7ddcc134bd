package config

import (
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"sigs.k8s.io/yaml"
)

// Fields reports the problems of one document, each at the path of its
// field ("spec.targetPorts[0].number"); the loader turns them into *Error
// values that name the file and the document. It also offers the checks
// that several kinds share, so that one mistake reads the same in every
// kind.
type Fields struct {
	ref docRef
	p   *parser
}

// Errorf reports a problem at field ("" for the whole document).
func (f *Fields) Errorf(field, format string, args ...any) {
	f.p.errs.addf(f.ref, field, format, args...)
}

// Error reports err at field ("" for the whole document).
func (f *Fields) Error(field string, err error) {
	f.p.errs.add(f.ref, field, err)
}

// ReadFile reads a file the document names (a keys file, a JWKS file). A
// relative path is relative to the configuration file's directory, so a
// configuration and its side files move together; the file becomes one of
// Config.SideFiles, so the Watcher reloads the configuration when it
// changes. The error names the path.
func (f *Fields) ReadFile(path string) ([]byte, error) {
	return f.p.readFile(path)
}

// meta validates and defaults the object metadata common to every kind.
func (f *Fields) meta(o Object, named bool) {
	switch name := o.GetName(); {
	case name == "" && named:
		f.Errorf("metadata.name", "required")
	case name != "":
		for _, msg := range content.IsDNS1123Subdomain(name) {
			f.Errorf("metadata.name", "%s", msg)
		}
	}
	if ns := o.GetNamespace(); ns == "" {
		o.SetNamespace(DefaultNamespace)
	} else {
		for _, msg := range content.IsDNS1123Label(ns) {
			f.Errorf("metadata.namespace", "%s", msg)
		}
	}
	f.Labels("metadata.labels", o.GetLabels())
}

// Labels validates label keys and values with the Kubernetes rules, so that
// a file valid here stays valid in a cluster.
func (f *Fields) Labels(field string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		lf := field + "[" + strconv.Quote(k) + "]"
		for _, msg := range content.IsLabelKey(k) {
			f.Errorf(lf, "invalid label key: %s", msg)
		}
		for _, msg := range content.IsLabelValue(labels[k]) {
			f.Errorf(lf, "invalid label value: %s", msg)
		}
	}
}

// DNSSubdomain reports name unless it is a lowercase RFC 1123 subdomain,
// the rule for the name of a Kubernetes object, and so for a reference to
// one.
func (f *Fields) DNSSubdomain(field, name string) {
	for _, msg := range content.IsDNS1123Subdomain(name) {
		f.Errorf(field, "%s", msg)
	}
}

// DNSLabel reports name unless it is a lowercase RFC 1123 label.
func (f *Fields) DNSLabel(field, name string) {
	for _, msg := range content.IsDNS1123Label(name) {
		f.Errorf(field, "%s", msg)
	}
}

// MaxModelNameLength bounds a model name in any kind.
const MaxModelNameLength = 256

// ModelName reports an empty or overlong model name.
func (f *Fields) ModelName(field, name string) {
	switch {
	case name == "":
		f.Errorf(field, "required")
	case len(name) > MaxModelNameLength:
		f.Errorf(field, "at most %d bytes, not %d", MaxModelNameLength, len(name))
	}
}

// HostPort reports addr unless it is host:port with a port of 0..65535
// (0 picks a free port, which tests use).
func (f *Fields) HostPort(field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		f.Errorf(field, "must be host:port such as \":8080\" or \"127.0.0.1:8080\", not %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		f.Errorf(field, "port must be 0..65535, not %q", port)
	}
}

// PositiveDuration reports a duration that is not above zero.
func (f *Fields) PositiveDuration(field string, d time.Duration) {
	if d <= 0 {
		f.Errorf(field, "must be positive, not %s", d)
	}
}

// NonNegativeDuration reports a negative duration; zero means no limit.
func (f *Fields) NonNegativeDuration(field string, d time.Duration) {
	if d < 0 {
		f.Errorf(field, "must not be negative, not %s (0s means no limit)", d)
	}
}

// Report receives the problems a Kind's Check finds, each in the object it
// is in.
type Report struct {
	p *parser
}

// In returns the reporter of obj's fields; obj is an object of the Config
// being checked.
func (r *Report) In(obj Object) *Fields {
	return &Fields{ref: r.p.refs[obj], p: r.p}
}

// DecodeYAML decodes a YAML file a document names (a keys file) into out
// as strictly as the loader decodes documents: unknown fields and values
// of the wrong type are problems, each "field: what is wrong". found is
// false, with no problems, when the file holds nothing.
func DecodeYAML(data []byte, out any) (found bool, problems []string) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return false, []string{fmt.Sprintf("invalid YAML: %v", err)}
	}
	v, err := decodeGeneric(js)
	if err != nil {
		return false, []string{fmt.Sprintf("invalid YAML: %v", err)}
	}
	if v == nil {
		return false, nil
	}
	var shapeErrs []shapeError
	checkShape("", v, reflect.TypeOf(out).Elem(), &shapeErrs)
	for _, se := range shapeErrs {
		problems = append(problems, se.field+": "+se.err.Error())
	}
	if len(problems) > 0 {
		return true, problems
	}
	if err := decodeStrict(v, out); err != nil {
		return true, []string{err.Error()}
	}
	return true, nil
}
