package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart is one chart of a report, written as SVG (for the page) and PNG
// (for places that do not show SVG).
type Chart struct {
	Title string `json:"title"`
	SVG   string `json:"svg"`
	PNG   string `json:"png"`
}

// chart sizes: wide enough for a legend of several contenders.
const (
	chartWidth  = 8 * vg.Inch
	chartHeight = 4.5 * vg.Inch
)

// WriteCharts draws the comparison's charts into dir: TTFT p50 and p90 and
// output throughput against the offered load (one line per contender), and
// each replica's share of the requests (bars grouped by replica). Charts
// need at least one contender with results; otherwise none are written.
func WriteCharts(dir string, c *Comparison) ([]Chart, error) {
	var withStages []ContenderResult
	for _, r := range c.Contenders {
		if len(r.Stages) > 0 {
			withStages = append(withStages, r)
		}
	}
	var charts []Chart
	save := func(p *plot.Plot, name, title string) error {
		ch := Chart{Title: title, SVG: name + ".svg", PNG: name + ".png"}
		for _, f := range []string{ch.SVG, ch.PNG} {
			if err := p.Save(chartWidth, chartHeight, filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("chart %s: %w", f, err)
			}
		}
		charts = append(charts, ch)
		return nil
	}
	if len(withStages) > 0 {
		xLabel, xOf := loadAxis(withStages)
		lat := func(pick func(Summary) float64, pLabel string) (*plot.Plot, error) {
			return lineChart(withStages, xOf, pick,
				fmt.Sprintf("Time to first token, %s, vs load — %s", pLabel, c.Workload.Name),
				xLabel, fmt.Sprintf("TTFT %s (seconds, log scale)", pLabel), true)
		}
		p, err := lat(func(s Summary) float64 { return s.TTFT.P50 }, "p50")
		if err != nil {
			return nil, err
		}
		if err := save(p, "ttft-p50", "TTFT p50 vs offered load"); err != nil {
			return nil, err
		}
		if p, err = lat(func(s Summary) float64 { return s.TTFT.P90 }, "p90"); err != nil {
			return nil, err
		}
		if err := save(p, "ttft-p90", "TTFT p90 vs offered load"); err != nil {
			return nil, err
		}
		p, err = lineChart(withStages, xOf, func(s Summary) float64 { return s.OutputTokenRate },
			"Output throughput vs load — "+c.Workload.Name, xLabel, "output tokens per second (completed in the stage)", false)
		if err != nil {
			return nil, err
		}
		if err := addOfferedLine(p, withStages, xOf); err != nil {
			return nil, err
		}
		if err := save(p, "throughput", "Output throughput vs offered load"); err != nil {
			return nil, err
		}
	}
	if p, ok, err := shareChart(c); err != nil {
		return nil, err
	} else if ok {
		if err := save(p, "replica-share", "Per-replica request share"); err != nil {
			return nil, err
		}
	}
	return charts, nil
}

// loadAxis picks the x axis: the offered QPS when every stage is
// open-loop, the concurrency when every stage is closed-loop, else the
// stage number.
func loadAxis(rs []ContenderResult) (string, func(i int, s Summary) float64) {
	allQPS, allConc := true, true
	for _, r := range rs {
		for _, s := range r.Stages {
			allQPS = allQPS && s.QPS > 0
			allConc = allConc && s.Concurrency > 0
		}
	}
	switch {
	case allQPS:
		return "offered load (requests per second, Poisson arrivals)", func(_ int, s Summary) float64 { return s.QPS }
	case allConc:
		return "concurrency (closed-loop clients)", func(_ int, s Summary) float64 { return float64(s.Concurrency) }
	}
	return "stage", func(i int, _ Summary) float64 { return float64(i + 1) }
}

// lineChart draws pick(stage) against the load, one line per contender.
// On a log scale, stages without a positive value (nothing succeeded) are
// left out.
func lineChart(rs []ContenderResult, xOf func(int, Summary) float64, pick func(Summary) float64, title, xLabel, yLabel string, logY bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), math.Inf(-1)
	var xs []float64
	for i, r := range rs {
		var xys plotter.XYs
		for j, s := range r.Stages {
			if x := xOf(j, s); !slices.Contains(xs, x) {
				xs = append(xs, x)
			}
			y := pick(s)
			if logY && y <= 0 {
				continue
			}
			xys = append(xys, plotter.XY{X: xOf(j, s), Y: y})
			lo, hi = min(lo, y), max(hi, y)
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(r.Name, line, points)
	}
	p.X.Tick.Marker = plainTicks{}
	if len(xs) <= 12 {
		// A tick at every stage's load: the x values are the ladder.
		var ticks plot.ConstantTicks
		for _, x := range xs {
			ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
		}
		p.X.Tick.Marker = ticks
	}
	if logY && hi > 0 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		// Whole 1-2-5 steps around the data so the scale has labels.
		p.Y.Min, p.Y.Max = step125Below(lo), step125Above(hi)
	} else {
		p.Y.Min = 0
		p.Y.Tick.Marker = plainTicks{}
	}
	return p, nil
}

// addOfferedLine draws what a router that kept up with every arrival would
// deliver: the offered request rate times the mean output length of the
// stage's answers (the same requests for every contender), so a line
// bending away from it shows where a contender fell behind.
func addOfferedLine(p *plot.Plot, rs []ContenderResult, xOf func(int, Summary) float64) error {
	var xys plotter.XYs
	for j := range rs[0].Stages {
		var tokens, reqs float64
		for _, r := range rs {
			if j < len(r.Stages) {
				tokens += float64(r.Stages[j].OutputTokens)
				reqs += float64(r.Stages[j].Succeeded)
			}
		}
		if reqs == 0 {
			continue
		}
		s := rs[0].Stages[j]
		xys = append(xys, plotter.XY{X: xOf(j, s), Y: s.OfferedRate * tokens / reqs})
	}
	if len(xys) == 0 {
		return nil
	}
	line, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	line.Color = color.Gray{Y: 140}
	line.Dashes = []vg.Length{vg.Points(2), vg.Points(3)}
	p.Add(line)
	p.Legend.Add("offered (arrivals × mean output)", line)
	return nil
}

// plainTicks are gonum's default tick positions with labels written as
// plain numbers ("7500", not "7500.00").
type plainTicks struct{}

// Ticks implements plot.Ticker.
func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}

// shareChart draws each replica's share of finished requests, one bar per
// contender in each replica's group; an even spread is 1/replicas each.
func shareChart(c *Comparison) (*plot.Plot, bool, error) {
	var rs []ContenderResult
	n := 0
	for _, r := range c.Contenders {
		if len(r.Replicas) > 0 {
			rs = append(rs, r)
			n = max(n, len(r.Replicas))
		}
	}
	if len(rs) == 0 {
		return nil, false, nil
	}
	p := plot.New()
	p.Title.Text = "Share of requests per replica — " + c.Workload.Name
	p.X.Label.Text = "replica"
	p.Y.Label.Text = "share of finished requests (%)"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	width := vg.Points(min(60/float64(len(rs)), 14))
	for i, r := range rs {
		vals := make(plotter.Values, n)
		for j := range n {
			if j < len(r.Replicas) {
				vals[j] = 100 * r.Replicas[j].Share
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, false, fmt.Errorf("chart: %w", err)
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(rs)-1)/2)
		p.Add(bars)
		p.Legend.Add(r.Name, bars)
	}
	even := 100 / float64(n)
	ref, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: even}, {X: float64(n) - 0.5, Y: even}})
	if err != nil {
		return nil, false, fmt.Errorf("chart: %w", err)
	}
	ref.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	ref.Width = vg.Points(1)
	p.Add(ref)
	p.Legend.Add("even spread", ref)
	names := make([]string, n)
	for i := range names {
		names[i] = "r" + strconv.Itoa(i)
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	// Headroom for the legend above the tallest bar.
	tallest := even
	for _, r := range rs {
		for _, rep := range r.Replicas {
			tallest = max(tallest, 100*rep.Share)
		}
	}
	p.Y.Max = tallest * 1.35
	return p, true, nil
}

// logTicks labels a log axis at 1, 2 and 5 times powers of ten — the
// labels plot.LogTicks leaves out, without which a range like 0.1–3 s
// would show one label.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// step125Below is the largest 1-2-5 step (…, 0.1, 0.2, 0.5, 1, …) at or
// below v.
func step125Below(v float64) float64 {
	e := math.Floor(math.Log10(v))
	base := math.Pow(10, e)
	for _, m := range []float64{5, 2, 1} {
		if m*base <= v*(1+1e-9) {
			return m * base
		}
	}
	return base
}

// step125Above is the smallest 1-2-5 step at or above v.
func step125Above(v float64) float64 {
	e := math.Floor(math.Log10(v))
	base := math.Pow(10, e)
	for _, m := range []float64{1, 2, 5, 10} {
		if m*base >= v*(1-1e-9) {
			return m * base
		}
	}
	return 10 * base
}
