package torchprof

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
)

//go:embed report.html.tmpl
var reportText string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":    ms,
	"short": func(s string, n int) string { return shortName(s, n) },
}).Parse(reportText))

// WriteHTML writes a self-contained report (inline CSS and SVG, no scripts, fonts or
// network): the verdict, a per-rank table, per-rank bar charts of the top kernels, a
// heat map of kernel time across ranks, and a timeline of GPU activity and steps. Names
// come from traces, so the page is made by html/template, which escapes them.
func (s *Summary) WriteHTML(w io.Writer) error {
	b := bufio.NewWriter(w)
	if err := reportTemplate.Execute(b, newReportView(s)); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return b.Flush()
}

// reportView is the summary laid out for report.html.tmpl: Go does the geometry, the
// template the markup.
type reportView struct {
	*Summary
	From     string // the inputs, shortened
	Verdict  bool   // more than one rank: say which is slow
	Rows     []rankRow
	Charts   []barChart
	Heat     *heatMap  // nil without kernels
	Timeline *timeline // nil without GPU activity
}

type rankRow struct {
	RankSummary
	Slow bool
}

type barChart struct {
	Label  string
	Height int
	Bars   []kernelBar
}

type kernelBar struct {
	KernelStat
	NameX, TextY int // name, right-aligned before the bar
	X, BarY, H   int
	W            float64
	Fill         string
	FigX         float64 // figures after the bar
	Percent      float64
}

type heatMap struct {
	Width, Height int
	Cols          []heatCol
	RatioX        int
	Rows          []heatRow
}

type heatCol struct {
	X     int
	Label string
}

type heatRow struct {
	Name                 string
	NameX, RatioX, TextY int
	Cells                []heatCell
	Ratio                string
}

type heatCell struct {
	X, Y, W, H   int
	TextX, TextY int
	Fill, Ink    string
	Rank         string
	Ns           int64
	Ms           float64
}

type timeline struct {
	Width, Height       int
	Lanes               []lane
	StartX, EndX, FootY int
	SpanNs              int64
}

type lane struct {
	Label      string
	TextY      int
	X, Y, W, H int
	Busy, Comm []box
	Steps      []stepMark
}

type box struct{ X, Y, W, H float64 }

type stepMark struct {
	X, W float64
	Y    int
	Fill string
	Name string
	Ns   int64
}

const (
	colorCompute = "#3b6fd8"
	colorComm    = "#f08c00"
)

func newReportView(s *Summary) *reportView {
	multi := len(s.Ranks) > 1
	v := &reportView{Summary: s, From: joinShort(s.Inputs), Verdict: s.SlowestRank != "" && multi}
	for _, r := range s.Ranks {
		v.Rows = append(v.Rows, rankRow{r, multi && r.Label == s.SlowestRank})
	}

	// Top kernels: one chart per rank, bars on one scale across ranks.
	const lw, bw, rowH = 470, 470, 20
	var maxK int64 = 1
	for _, r := range s.Ranks {
		for _, k := range r.Top {
			maxK = max(maxK, k.TotalNs)
		}
	}
	for _, r := range s.Ranks {
		c := barChart{Label: r.Label, Height: 28 + rowH*len(r.Top)}
		for i, k := range r.Top {
			y := 26 + i*rowH
			w := math.Max(1, float64(k.TotalNs)/float64(maxK)*bw)
			fill := colorCompute
			if k.Comm {
				fill = colorComm
			}
			c.Bars = append(c.Bars, kernelBar{KernelStat: k, NameX: lw - 6, TextY: y + 13, X: lw, BarY: y + 2, H: rowH - 5,
				W: w, Fill: fill, FigX: float64(lw) + w + 6, Percent: k.Share * 100})
		}
		v.Charts = append(v.Charts, c)
	}

	if len(s.Kernels) > 0 && len(s.Ranks) > 0 {
		v.Heat = newHeatMap(s)
	}
	if s.EndNs > s.StartNs && len(s.Ranks) > 0 {
		v.Timeline = newTimeline(s)
	}
	return v
}

// newHeatMap lays out kernel time per rank, each kernel's row relative to its largest.
func newHeatMap(s *Summary) *heatMap {
	const lw, cw, rowH = 470, 90, 22
	cols := len(s.Ranks)
	h := &heatMap{Width: lw + cw*cols + 80, Height: 30 + rowH*len(s.Kernels), RatioX: lw + cw*cols + 40}
	for j, r := range s.Ranks {
		h.Cols = append(h.Cols, heatCol{lw + cw*j + cw/2, r.Label})
	}
	for i, k := range s.Kernels {
		y := 26 + i*rowH
		row := heatRow{Name: k.Name, NameX: lw - 6, RatioX: h.RatioX, TextY: y + 15, Ratio: fmt.Sprintf("%.2f×", k.Ratio)}
		if k.Ranks < cols {
			row.Ratio = fmt.Sprintf("%d of %d ranks", k.Ranks, cols)
		}
		var mx int64 = 1
		for _, t := range k.TotalNs {
			mx = max(mx, t)
		}
		for j, t := range k.TotalNs {
			f := float64(t) / float64(mx)
			ink := "#1d2330"
			if f > 0.6 {
				ink = "#fff"
			}
			row.Cells = append(row.Cells, heatCell{X: lw + cw*j, Y: y, W: cw - 2, H: rowH - 2, TextX: lw + cw*j + cw/2, TextY: y + 14,
				Fill: heat(f), Ink: ink, Rank: s.Ranks[j].Label, Ns: t, Ms: float64(t) / 1e6})
		}
		h.Rows = append(h.Rows, row)
	}
	return h
}

// newTimeline lays out each rank's busy and communication fractions per bin, and its
// steps, on the common range [StartNs, EndNs).
func newTimeline(s *Summary) *timeline {
	const lw, tw, laneH, barH = 90, 1040, 46, 26
	span := s.EndNs - s.StartNs
	h := 30 + laneH*len(s.Ranks)
	t := &timeline{Width: lw + tw + 10, Height: h, StartX: lw, EndX: lw + tw, FootY: h - 4, SpanNs: span}
	binW := float64(tw) / timelineBins
	bars := func(fracs []float64, y int) []box {
		var out []box
		for j, f := range fracs {
			if f > 0 {
				out = append(out, box{lw + float64(j)*binW, float64(y) + barH*(1-f), binW + 0.2, barH * f})
			}
		}
		return out
	}
	for i, r := range s.Ranks {
		y := 10 + i*laneH
		l := lane{Label: r.Label, TextY: y + 18, X: lw, Y: y, W: tw, H: barH,
			Busy: bars(r.TimelineBusy, y), Comm: bars(r.TimelineComm, y)}
		for j, st := range r.Steps {
			x0 := lw + float64(tw)*float64(st.StartNs-s.StartNs)/float64(span)
			x1 := lw + float64(tw)*float64(st.EndNs-s.StartNs)/float64(span)
			x0, x1 = math.Max(x0, lw), math.Min(x1, lw+tw)
			if x1 <= x0 {
				continue
			}
			fill := "#94a3b8"
			if j%2 == 1 {
				fill = "#cbd5e1"
			}
			l.Steps = append(l.Steps, stepMark{X: x0, W: math.Max(x1-x0, 0.5), Y: y + barH + 3, Fill: fill, Name: st.Name, Ns: st.EndNs - st.StartNs})
		}
		t.Lanes = append(t.Lanes, l)
	}
	return t
}

// heat maps 0..1 to white..deep red.
func heat(f float64) string {
	f = math.Max(0, math.Min(1, f))
	r := 255 - int(f*(255-178))
	g := 255 - int(f*(255-34))
	bl := 255 - int(f*(255-34))
	return fmt.Sprintf("#%02x%02x%02x", r, g, bl)
}

func joinShort(paths []string) string {
	switch len(paths) {
	case 0:
		return "nothing"
	case 1:
		return paths[0]
	default:
		return fmt.Sprintf("%s and %d more", paths[0], len(paths)-1)
	}
}
