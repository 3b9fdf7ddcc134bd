package modelserver

import (
	"bytes"
	"errors"
	"fmt"
	"math"
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

	text    expfmt.TextParser
	reader  bytes.Reader
	scratch []byte

	// The adapter sets of the last result. Snapshots are immutable, so an
	// unchanged set is shared with the next snapshot instead of rebuilt.
	active, waiting map[string]struct{}
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
	return &Parser{
		engine: engine,
		m:      m,
		wanted: m.families(),
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
	return out, nil
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
// parser wants (samples, and the HELP and TYPE comments naming it), each
// ending in a newline. Everything else, notably every histogram bucket, is
// dropped after reading only its metric name.
func (p *Parser) filter(dst, page []byte) []byte {
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			page = nil
		}
		if p.wants(lineFamily(line)) {
			dst = append(dst, line...)
			if line[len(line)-1] != '\n' {
				dst = append(dst, '\n')
			}
		}
	}
	return dst
}

func (p *Parser) wants(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, w := range p.wanted {
		if string(name) == w {
			return true
		}
	}
	return false
}

// lineFamily returns the metric name a text-format line is about: the name
// of a sample (plain or quoted inside the braces), or the name of a HELP or
// TYPE comment. It returns nil for blank lines and other comments. Sample
// names of histograms and summaries keep their suffix (_bucket, _sum,
// _count), so they never match a gauge family.
func lineFamily(line []byte) []byte {
	line = trimBlank(line)
	if len(line) == 0 {
		return nil
	}
	switch line[0] {
	case '#':
		rest := trimBlank(line[1:])
		if !bytes.HasPrefix(rest, []byte("HELP")) && !bytes.HasPrefix(rest, []byte("TYPE")) {
			return nil
		}
		rest = rest[4:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return nil
		}
		return nameToken(trimBlank(rest))
	case '{':
		return nameToken(trimBlank(line[1:]))
	}
	return nameToken(line)
}

// nameToken returns the metric name at the start of b: a quoted name without
// its quotes, or a bare name up to the first brace or blank.
func nameToken(b []byte) []byte {
	if len(b) > 0 && b[0] == '"' {
		if i := bytes.IndexByte(b[1:], '"'); i >= 0 {
			return b[1 : 1+i]
		}
		return nil
	}
	for i, c := range b {
		switch c {
		case '{', ' ', '\t', '\n', '\r':
			return b[:i]
		}
	}
	return b
}

func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
