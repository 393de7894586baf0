package torchprof

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// TestHTMLRendersInChromium renders the report of both fixture kinds in headless
// Chromium and checks that the screenshot holds a report, not a blank page. Set
// NSYS_AGENT_SCREENSHOT_DIR to keep the PNGs for a look.
func TestHTMLRendersInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		nsystest.Missing(t, "chromium is not installed; run scripts/install-test-deps.sh")
	}
	files, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	kineto, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	nsys, err := AnalyzeNsysSQLite(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Summary{"kineto": kineto, "nsys": nsys} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var b bytes.Buffer
			if err := s.WriteHTML(&b); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			for _, bad := range []string{"<script", "http://", "https://", "@import", "url("} {
				if strings.Contains(page, bad) {
					t.Errorf("report is not self-contained: it has %q", bad)
				}
			}
			for _, want := range []string{"Slowest rank: " + s.SlowestRank, "Imbalance heat map", "Step timeline", "Top kernels per rank"} {
				if !strings.Contains(page, want) {
					t.Errorf("report lacks %q", want)
				}
			}
			htmlPath := filepath.Join(dir, "report.html")
			pngPath := filepath.Join(dir, "report.png")
			if err := os.WriteFile(htmlPath, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+pngPath, "--window-size=1200,1600",
				"file://"+htmlPath)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("chromium: %v\n%s", err, out)
			}
			f, err := os.Open(pngPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			bounds := img.Bounds()
			if bounds.Dx() != 1200 || bounds.Dy() != 1600 {
				t.Errorf("screenshot is %v, want 1200×1600", bounds.Size())
			}
			colors := map[uint32]bool{}
			var ink, red, blue int
			for y := bounds.Min.Y; y < bounds.Max.Y; y += 2 {
				for x := bounds.Min.X; x < bounds.Max.X; x += 2 {
					r, g, b, _ := img.At(x, y).RGBA()
					r, g, b = r>>8, g>>8, b>>8
					colors[r<<16|g<<8|b] = true
					if r < 240 || g < 240 || b < 240 {
						ink++
					}
					if r > 150 && g < 80 && b < 80 {
						red++ // heat map cells
					}
					if b > 180 && r < 100 {
						blue++ // kernel bars
					}
				}
			}
			total := (bounds.Dx() / 2) * (bounds.Dy() / 2)
			t.Logf("%d colours, %.1f%% ink, %d red, %d blue samples", len(colors), 100*float64(ink)/float64(total), red, blue)
			if len(colors) < 50 || ink < total/50 || red < 100 || blue < 100 {
				t.Errorf("screenshot looks blank or lacks the charts: %d colours, %d of %d samples inked, %d red, %d blue",
					len(colors), ink, total, red, blue)
			}
			if d := os.Getenv("NSYS_AGENT_SCREENSHOT_DIR"); d != "" {
				png, _ := os.ReadFile(pngPath)
				os.WriteFile(filepath.Join(d, name+".png"), png, 0o644)
				os.WriteFile(filepath.Join(d, name+".html"), b.Bytes(), 0o644)
			}
		})
	}
}

// TestHTMLEscapesTraceNames: kernel, step and file names come from traces, so a trace can
// carry markup; it must come out as text, in element text, attributes and SVG titles.
func TestHTMLEscapesTraceNames(t *testing.T) {
	dir := t.TempDir()
	const kernel = `<script>alert(1)</script>`
	const step = `</title><script>alert(2)</script>`
	ev := func(cat, name, ts string) string {
		return `{"ph":"X","cat":"` + cat + `","name":"` + name + `","pid":0,"tid":7,"ts":` + ts + `,"dur":10}`
	}
	for r, extra := range []string{"10", "30"} {
		writeGz(t, filepath.Join(dir, `"><img src=x>-TP-`+strconv.Itoa(r)+`.trace.json.gz`), `{"traceEvents": [`+
			ev("kernel", kernel, "100")+","+ev("kernel", "gemm", extra)+","+ev("gpu_user_annotation", step, "100")+`]}`)
	}
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ranks[0].Top[0].Name != kernel || s.Ranks[0].Steps[0].Name != step {
		t.Fatalf("the trace did not carry the names through: %+v", s.Ranks[0])
	}
	var b bytes.Buffer
	if err := s.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "<img"} {
		if strings.Contains(page, bad) {
			t.Errorf("report has %q unescaped", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;</text>",               // bar label
		"<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>",       // bar tooltip (SVG title, RCDATA)
		"<title>&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;", // step tooltip
		"&#34;&gt;&lt;img src=x&gt;-TP-0.trace.json.gz",              // file name in the table
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks the escaped form %q", want)
		}
	}
}
