package torchprof

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// WriteHTML writes a self-contained report (inline CSS and SVG, no scripts, fonts or
// network): the verdict, a per-rank table, per-rank bar charts of the top kernels, a
// heat map of kernel time across ranks, and a timeline of GPU activity and steps.
func (s *Summary) WriteHTML(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	e := html.EscapeString

	p(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>nsys-agent: GPU time per rank</title>
<style>
body{font:14px/1.4 "DejaVu Sans",Arial,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d6dbe4;padding-bottom:4px}
.sub{color:#5b6475;font-size:12px;word-break:break-all}
.verdict{background:#fff4e5;border-left:5px solid #e8590c;padding:10px 14px;margin:14px 0;font-size:15px}
table{border-collapse:collapse;font-size:13px} td,th{padding:4px 10px;text-align:right;border-bottom:1px solid #e6e9ef}
th{background:#f3f5f9} td:first-child,th:first-child{text-align:left}
.slow{color:#c92a2a;font-weight:bold} svg text{font-family:"DejaVu Sans",Arial,sans-serif}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:middle}
</style></head><body>
`)
	p("<h1>GPU time per rank</h1>\n<div class=sub>%s: %d rank(s) from %s</div>\n", e(s.Source), len(s.Ranks), e(joinShort(s.Inputs)))
	if s.SlowestRank != "" && len(s.Ranks) > 1 {
		p("<div class=verdict><b>Slowest rank: %s</b> — imbalance %.2f× (slowest compute / fastest compute).<br>%s.</div>\n",
			e(s.SlowestRank), s.Imbalance, e(s.Reason))
	}

	p("<h2>Ranks</h2>\n<table><tr><th>rank</th><th>kernels</th><th>kernel time</th><th>GPU busy</th><th>communication</th><th>compute</th><th>span</th><th>source</th></tr>\n")
	for _, r := range s.Ranks {
		cls := ""
		if r.Label == s.SlowestRank && len(s.Ranks) > 1 {
			cls = " class=slow"
		}
		p("<tr%s><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=sub>%s</td></tr>\n",
			cls, e(r.Label), r.Kernels, ms(r.KernelNs), ms(r.BusyNs), ms(r.CommNs), ms(r.ComputeNs), ms(r.SpanNs), e(shortName(r.Input, 60)))
	}
	p("</table>\n")

	p(`<h2>Top kernels per rank</h2><div class=legend><span style="background:#3b6fd8"></span>compute<span style="background:#f08c00"></span>communication</div>` + "\n")
	var maxK int64 = 1
	for _, r := range s.Ranks {
		for _, k := range r.Top {
			maxK = max(maxK, k.TotalNs)
		}
	}
	for _, r := range s.Ranks {
		const lw, bw, rowH = 470, 470, 20
		h := 28 + rowH*len(r.Top)
		p(`<svg width="1140" height="%d" role="img" aria-label="top kernels of %s">`, h, e(r.Label))
		p(`<text x="0" y="16" font-size="14" font-weight="bold">%s</text>`, e(r.Label))
		for i, k := range r.Top {
			y := 26 + i*rowH
			wpx := math.Max(1, float64(k.TotalNs)/float64(maxK)*bw)
			color := "#3b6fd8"
			if k.Comm {
				color = "#f08c00"
			}
			p(`<text x="%d" y="%d" font-size="11" text-anchor="end">%s</text>`, lw-6, y+13, e(shortName(k.Name, 72)))
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`, lw, y+2, wpx, rowH-5, color, e(k.Name))
			p(`<text x="%.1f" y="%d" font-size="11">%s · %d× · %.0f%%</text>`, float64(lw)+wpx+6, y+13, ms(k.TotalNs), k.Count, k.Share*100)
		}
		p("</svg>\n")
	}

	if len(s.Kernels) > 0 && len(s.Ranks) > 0 {
		p("<h2>Imbalance heat map</h2><div class=sub>Kernel time per rank relative to the rank that spends the most on that kernel (darker = more); ratio = max / min over ranks that ran it, or how many ranks ran it when not all did.</div>\n")
		const lw, cw, rowH = 470, 90, 22
		cols := len(s.Ranks)
		width := lw + cw*cols + 80
		h := 30 + rowH*len(s.Kernels)
		p(`<svg width="%d" height="%d" role="img" aria-label="imbalance heat map">`, width, h)
		for j, r := range s.Ranks {
			p(`<text x="%d" y="18" font-size="12" text-anchor="middle" font-weight="bold">%s</text>`, lw+cw*j+cw/2, e(r.Label))
		}
		p(`<text x="%d" y="18" font-size="12" text-anchor="middle" font-weight="bold">ratio</text>`, lw+cw*cols+40)
		for i, k := range s.Kernels {
			y := 26 + i*rowH
			var mx int64 = 1
			for _, t := range k.TotalNs {
				mx = max(mx, t)
			}
			p(`<text x="%d" y="%d" font-size="11" text-anchor="end">%s</text>`, lw-6, y+15, e(shortName(k.Name, 72)))
			for j, t := range k.TotalNs {
				f := float64(t) / float64(mx)
				p(`<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s on %s: %s</title></rect>`,
					lw+cw*j, y, cw-2, rowH-2, heat(f), e(k.Name), e(s.Ranks[j].Label), ms(t))
				fg := "#1d2330"
				if f > 0.6 {
					fg = "#fff"
				}
				p(`<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="%s">%.2f ms</text>`, lw+cw*j+cw/2, y+14, fg, float64(t)/1e6)
			}
			ratio := fmt.Sprintf("%.2f×", k.Ratio)
			if k.Ranks < len(s.Ranks) {
				ratio = fmt.Sprintf("%d of %d ranks", k.Ranks, len(s.Ranks))
			}
			p(`<text x="%d" y="%d" font-size="11" text-anchor="middle">%s</text>`, lw+cw*cols+40, y+15, ratio)
		}
		p("</svg>\n")
	}

	if span := s.EndNs - s.StartNs; span > 0 && len(s.Ranks) > 0 {
		p(`<h2>Step timeline</h2><div class=legend><span style="background:#3b6fd8"></span>GPU busy<span style="background:#f08c00"></span>communication<span style="background:#94a3b8"></span>steps</div>` + "\n")
		const lw, tw, laneH = 90, 1040, 46
		h := 30 + laneH*len(s.Ranks)
		p(`<svg width="%d" height="%d" role="img" aria-label="step timeline">`, lw+tw+10, h)
		binW := float64(tw) / timelineBins
		for i, r := range s.Ranks {
			y := 10 + i*laneH
			p(`<text x="0" y="%d" font-size="12" font-weight="bold">%s</text>`, y+18, e(r.Label))
			p(`<rect x="%d" y="%d" width="%d" height="26" fill="#f3f5f9"/>`, lw, y, tw)
			for j, f := range r.TimelineBusy {
				if f > 0 {
					p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3b6fd8"/>`, lw+float64(j)*binW, float64(y)+26*(1-f), binW+0.2, 26*f)
				}
			}
			for j, f := range r.TimelineComm {
				if f > 0 {
					p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#f08c00"/>`, lw+float64(j)*binW, float64(y)+26*(1-f), binW+0.2, 26*f)
				}
			}
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
				p(`<rect x="%.1f" y="%d" width="%.1f" height="8" fill="%s"><title>%s: %s</title></rect>`, x0, y+29, math.Max(x1-x0, 0.5), fill, e(st.Name), ms(st.EndNs-st.StartNs))
			}
		}
		p(`<text x="%d" y="%d" font-size="11">0 ms</text><text x="%d" y="%d" font-size="11" text-anchor="end">%s</text>`,
			lw, h-4, lw+tw, h-4, ms(span))
		p("</svg>\n")
	}
	p("</body></html>\n")
	return b.Flush()
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
