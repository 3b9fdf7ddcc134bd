package modelserver

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/igw-dev/igw/pkg/datastore"
)

// ErrMissingMetric is wrapped by Parse when a page lacks a metric igw cannot
// schedule without (queue, running or KV usage). Callers tell it apart from
// a malformed page to report a misconfigured engine type, the usual cause.
var ErrMissingMetric = errors.New("required metric missing")

// ErrUnknownEngine is returned by NewParser for an engine with no metric
// mapping, so a typo in an engine-type label fails loudly instead of
// producing an endpoint that never gets metrics.
var ErrUnknownEngine = errors.New("unknown model-server engine")

// Parser turns one engine's /metrics page into a *datastore.Metrics.
//
// It exists as a value, rather than a function, because it keeps scratch
// buffers and the last published LoRA adapter sets between calls: scraping
// an endpoint 20 times a second then allocates little. For the same reason
// it is not safe for concurrent use; each scrape loop owns one.
type Parser struct {
	engine datastore.Engine
	m      mapping
	wanted []string // families m reads; all other lines are dropped unparsed
	newest []bool   // per wanted family: only its newest series is read

	text    expfmt.TextParser
	reader  bytes.Reader
	scratch []byte

	// The adapter sets and base models of the last result. Snapshots are
	// immutable, so an unchanged set is shared with the next snapshot
	// instead of rebuilt.
	active, waiting map[string]struct{}
	bases           []string
}

// NewParser returns a parser for engine's metric names (REFERENCE §4). An
// empty engine means vLLM, as for the engine-type pod label.
func NewParser(engine datastore.Engine) (*Parser, error) {
	if engine == "" {
		engine = datastore.EngineVLLM
	}
	m, ok := mappingFor(engine)
	if !ok {
		return nil, fmt.Errorf("modelserver: %w %q", ErrUnknownEngine, engine)
	}
	wanted, newest := m.families()
	return &Parser{
		engine: engine,
		m:      m,
		wanted: wanted,
		newest: newest,
		text:   expfmt.NewTextParser(model.UTF8Validation),
	}, nil
}

// Parse reads a Prometheus text-format page and returns a new snapshot with
// UpdateTime left zero: the caller stamps it when the scrape completes,
// before publishing. page is not modified or retained.
//
// Only the lines of the families the engine's mapping names are parsed, so
// a malformed line elsewhere on the page is ignored, and line numbers in
// parse errors count the kept lines only.
func (p *Parser) Parse(page []byte) (*datastore.Metrics, error) {
	p.scratch = p.filter(p.scratch[:0], page)
	p.reader.Reset(p.scratch)
	fams, err := p.text.TextToMetricFamilies(&p.reader)
	if err != nil {
		return nil, fmt.Errorf("modelserver: parse %s metrics: %w", p.engine, err)
	}

	out := &datastore.Metrics{}
	waiting, err := p.required(fams, "waiting queue", p.m.waiting)
	if err != nil {
		return nil, err
	}
	running, err := p.required(fams, "running requests", p.m.running)
	if err != nil {
		return nil, err
	}
	kv, err := p.required(fams, "KV-cache usage", p.m.kvUsage)
	if err != nil {
		return nil, err
	}
	out.WaitingQueueSize = toCount(waiting)
	out.RunningRequests = toCount(running)
	out.KVCacheUsage = math.Min(math.Max(kv, 0), 1)

	if v, ok, err := resolve(fams, p.m.blockSize); ok && err == nil {
		out.CacheBlockSize = toCount(v)
	}
	if v, ok, err := resolve(fams, p.m.numBlocks); ok && err == nil {
		out.CacheNumBlocks = toCount(v)
	}
	if p.m.lora != "" {
		p.readLoRA(fams[p.m.lora], out)
	}
	out.BaseModels = p.baseModels(fams[p.m.waiting[0].family])
	return out, nil
}

// modelNameLabel is the label vLLM and SGLang put on every per-model series:
// the served (base) model name. LoRA adapters never appear in it, which is
// how the Director tells an adapter from a base model.
const modelNameLabel = "model_name"

// baseModels lists the model_name values of mf's series. The previous
// slice is returned while the set is unchanged, so a steady server costs no
// allocation; snapshots share it read-only.
func (p *Parser) baseModels(mf *dto.MetricFamily) []string {
	same, seen := len(p.bases) <= 64, uint64(0)
	for _, m := range mf.GetMetric() {
		if !same {
			break
		}
		if v := labelValue(m, modelNameLabel); v != "" {
			i := slices.Index(p.bases, v)
			same = i >= 0
			if same {
				seen |= 1 << i
			}
		}
	}
	if same && seen == 1<<len(p.bases)-1 && p.bases != nil {
		return p.bases
	}
	var names []string
	for _, m := range mf.GetMetric() {
		if v := labelValue(m, modelNameLabel); v != "" && !slices.Contains(names, v) {
			names = append(names, v)
		}
	}
	p.bases = names
	return names
}

// required resolves a concept the scrape cannot do without.
func (p *Parser) required(fams map[string]*dto.MetricFamily, what string, srcs []source) (float64, error) {
	v, ok, err := resolve(fams, srcs)
	if err != nil {
		return 0, fmt.Errorf("modelserver: %s %s: %w", p.engine, what, err)
	}
	if !ok {
		return 0, fmt.Errorf("modelserver: %s %s (%s): %w", p.engine, what, familyNames(srcs), ErrMissingMetric)
	}
	return v, nil
}

func familyNames(srcs []source) string {
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.family
		if s.whereLabel != "" {
			names[i] += "{" + s.whereLabel + "=\"" + s.whereValue + "\"}"
		}
	}
	return strings.Join(names, " or ")
}

// resolve reads the first source present on the page. ok is false when no
// source has a matching series.
func resolve(fams map[string]*dto.MetricFamily, srcs []source) (v float64, ok bool, err error) {
	for _, s := range srcs {
		if v, ok, err = s.read(fams[s.family]); ok || err != nil {
			return v, ok, err
		}
	}
	return 0, false, nil
}

// read aggregates the series of mf that s selects.
func (s source) read(mf *dto.MetricFamily) (v float64, ok bool, err error) {
	if mf == nil {
		return 0, false, nil
	}
	var newest *dto.Metric
	newestV := math.Inf(-1)
	for _, m := range mf.GetMetric() {
		if s.whereLabel != "" && labelValue(m, s.whereLabel) != s.whereValue {
			continue
		}
		x, has := sampleValue(m)
		if !has || math.IsNaN(x) {
			continue
		}
		switch {
		case !ok:
			v = x
		case s.agg == sumSeries:
			v += x
		case x > v:
			v = x
		}
		ok = true
		if newest == nil || x > newestV {
			newest, newestV = m, x
		}
	}
	if !ok || s.fromLabel == "" {
		return v, ok, nil
	}
	raw := labelValue(newest, s.fromLabel)
	v, err = strconv.ParseFloat(raw, 64)
	if err != nil {
		return 0, false, fmt.Errorf("label %s of %s: %w", s.fromLabel, s.family, err)
	}
	return v, true, nil
}

// readLoRA fills the adapter fields from the newest series of a vLLM-style
// LoRA info family: its value is the time it was written and old series
// linger on the page.
func (p *Parser) readLoRA(mf *dto.MetricFamily, out *datastore.Metrics) {
	var newest *dto.Metric
	newestV := math.Inf(-1)
	for _, m := range mf.GetMetric() {
		if x, has := sampleValue(m); has && !math.IsNaN(x) && (newest == nil || x > newestV) {
			newest, newestV = m, x
		}
	}
	if newest == nil {
		return
	}
	if n, err := strconv.ParseFloat(labelValue(newest, loraMaxLabel), 64); err == nil {
		out.MaxActiveAdapters = toCount(n)
	}
	p.active = adapterSet(p.active, labelValue(newest, loraRunningLabel))
	p.waiting = adapterSet(p.waiting, labelValue(newest, loraWaitingLabel))
	out.ActiveAdapters, out.WaitingAdapters = p.active, p.waiting
}

// adapterSet returns the set of the comma-separated names in list, reusing
// prev when it holds exactly those names (published maps are never
// modified, only replaced). An empty list is a nil set.
func adapterSet(prev map[string]struct{}, list string) map[string]struct{} {
	same := true
	n := 0
	for name := range strings.SplitSeq(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		n++
		if _, ok := prev[name]; !ok {
			same = false
			break
		}
	}
	if n == 0 {
		return nil
	}
	if same {
		for have := range prev {
			if !listHas(list, have) {
				same = false
				break
			}
		}
		if same {
			return prev
		}
	}
	set := make(map[string]struct{}, n)
	for name := range strings.SplitSeq(list, ",") {
		if name = strings.TrimSpace(name); name != "" {
			set[name] = struct{}{}
		}
	}
	return set
}

func listHas(list, name string) bool {
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == name {
			return true
		}
	}
	return false
}

func labelValue(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// sampleValue accepts the types engines use for their gauges (some export
// them untyped or as counters).
func sampleValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// toCount rounds a reported count, clamping nonsense (negative, huge) into
// a range the scorers can use.
func toCount(v float64) int {
	switch {
	case !(v > 0): // also NaN
		return 0
	case v >= math.MaxInt32:
		return math.MaxInt32
	}
	return int(math.Round(v))
}

// filter appends to dst the lines of page that belong to a family the
// parser wants (samples, and the TYPE comment naming it; HELP text is never
// read), each ending in a newline. Everything else, notably every histogram bucket, is
// dropped after comparing its first bytes with the wanted names. Of a
// family where only the newest series is read, only the sample line with
// the largest value is kept, so lingering LoRA series cost a float parse
// each instead of a full decode.
func (p *Parser) filter(dst, page []byte) []byte {
	var (
		best    []byte // newest line of the newest-only group being read
		bestV   float64
		bestFam = -1
	)
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			page = nil
		}
		fam, sample := p.match(line)
		if fam >= 0 && sample && p.newest[fam] {
			if v, ok := lineValue(line); ok {
				if fam != bestFam && best != nil {
					dst = appendLine(dst, best)
					best = nil
				}
				if best == nil || newer(v, bestV) {
					best, bestV, bestFam = line, v, fam
				}
				continue
			}
			// Unreadable value: keep the line so that the parser reports it.
		}
		if best != nil {
			dst = appendLine(dst, best)
			best, bestFam = nil, -1
		}
		if fam >= 0 {
			dst = appendLine(dst, line)
		}
	}
	if best != nil {
		dst = appendLine(dst, best)
	}
	return dst
}

// newer orders the values of info series as Parse does: larger is newer,
// and NaN is older than anything.
func newer(v, than float64) bool {
	if math.IsNaN(than) {
		return !math.IsNaN(v)
	}
	return v > than
}

func appendLine(dst, line []byte) []byte {
	dst = append(dst, line...)
	if line[len(line)-1] != '\n' {
		dst = append(dst, '\n')
	}
	return dst
}

// lineValue reads the sample value of a sample line: the first field after
// the label set (or after the name when there is none). The closing brace
// is the last one on the line, since neither the value nor a timestamp can
// contain one.
func lineValue(line []byte) (float64, bool) {
	rest := trimBlank(line)
	if i := bytes.LastIndexByte(rest, '}'); i >= 0 {
		rest = rest[i+1:]
	} else {
		i := bytes.IndexAny(rest, " \t")
		if i < 0 {
			return 0, false
		}
		rest = rest[i:]
	}
	rest = trimBlank(rest)
	end := 0
	for end < len(rest) && rest[end] != ' ' && rest[end] != '\t' && rest[end] != '\n' && rest[end] != '\r' {
		end++
	}
	v, err := strconv.ParseFloat(string(rest[:end]), 64)
	return v, err == nil
}

// match returns the index in p.wanted of the family a text-format line is
// about, or -1, and whether the line is a sample (rather than its TYPE
// comment). Samples may name their metric bare or quoted inside the
// braces. Blank lines and other comments, HELP included, match nothing.
// Histogram and summary samples carry a suffix (_bucket, _sum, _count), so
// they never match a gauge family that is a prefix of their name.
func (p *Parser) match(line []byte) (fam int, sample bool) {
	line = trimBlank(line)
	if len(line) == 0 {
		return -1, false
	}
	switch line[0] {
	case '#':
		rest := trimBlank(line[1:])
		if len(rest) < 5 || string(rest[:4]) != "TYPE" || (rest[4] != ' ' && rest[4] != '\t') {
			return -1, false
		}
		return p.wantedPrefix(trimBlank(rest[5:])), false
	case '{':
		return p.wantedPrefix(trimBlank(line[1:])), true
	}
	return p.wantedPrefix(line), true
}

// wantedPrefix returns the index of the wanted family name b begins with,
// bare or quoted, followed by the end of the name; -1 if none.
func (p *Parser) wantedPrefix(b []byte) int {
	quoted := len(b) > 0 && b[0] == '"'
	if quoted {
		b = b[1:]
	}
	for i, w := range p.wanted {
		if len(b) <= len(w) {
			continue
		}
		// The byte after the name is checked first: on most lines it is
		// still part of a longer name, which rejects them without
		// comparing the names.
		c := b[len(w)]
		if quoted {
			if c != '"' {
				continue
			}
		} else if c != '{' && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			continue
		}
		if string(b[:len(w)]) == w {
			return i
		}
	}
	return -1
}

func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
