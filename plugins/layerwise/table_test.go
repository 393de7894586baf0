package layerwise

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/golden"
)

// TestWriteTableGolden pins what `nsys-agent show` prints for the golden summary.
func TestWriteTableGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/h100-layers.summary.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ok, err := WriteTable(&out, raw, 4)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	golden.Check(t, "testdata/h100-layers.show.golden.txt", out.String(), *update)
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name    string
		summary string
		ours    bool
		fails   bool
		says    []string
	}{
		{"empty", "", false, false, nil},
		{"not JSON", "{", false, false, nil},
		{"the nsys backend's summary", `{"slowest_rank":"pid 1","ranks":[]}`, false, false, nil},
		{"another kind", `{"kind":"torch"}`, false, false, nil},
		{"ours, broken", `{"kind":"layerwise-nvtx","ranks":"many"}`, true, true, nil},
		{"ours, a rank without layer ranges", `{"kind":"layerwise-nvtx","sort":"total","ranks":[{"pid":9,"kernels":3,"kernel_ns":5000000,"modules":[]}]}`,
			true, false, []string{"pid 9: 3 kernels, 5.000 ms on the GPU, 0.0% inside 0 layer ranges; modules by total time", "no layer ranges"}},
		{"ours, hostile process name", `{"kind":"layerwise-nvtx","ranks":[{"pid":9,"process":"py\u001b]0;x\u0007","modules":[{"module":"m","layer":-1,"calls":1}],"more_modules":2}]}`,
			true, false, []string{`pid 9 (py\x1b]0;x\a)`, "(2 more modules in the window's table)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ok, err := WriteTable(&out, json.RawMessage(tc.summary), 0)
			if ok != tc.ours || (err != nil) != tc.fails {
				t.Fatalf("ours %v error %v; want %v, fails %v", ok, err, tc.ours, tc.fails)
			}
			if !ok && out.Len() > 0 {
				t.Errorf("wrote %q for a summary that is not ours", out.String())
			}
			for _, s := range tc.says {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
			if strings.ContainsAny(out.String(), "\x1b\x07") {
				t.Errorf("control characters reach the terminal: %q", out.String())
			}
		})
	}
}

func TestCSVText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"model.model.layers.0", "model.model.layers.0"},
		{"=1+2", "'=1+2"},
		{"+x", "'+x"},
		{"-x", "'-x"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\t=x", `\t=x`},
		{"a\x1b[31mb", `a\x1b[31mb`},
		{"a\xffb", `a\ufffdb`},
		{"", ""},
	}
	for _, tc := range tests {
		if got := csvText(tc.in); got != tc.want {
			t.Errorf("csvText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrintable(t *testing.T) {
	long := strings.Repeat("é", 200)
	if got := printable(long); len([]rune(got)) != 160 || !strings.HasSuffix(got, "…") {
		t.Errorf("a 200-rune name printed as %d runes", len([]rune(got)))
	}
	if got := printable("ok name"); got != "ok name" {
		t.Errorf("printable changed a clean name: %q", got)
	}
}
