package pluginhost

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"plain lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"split across writes", []string{"pan", "ic: boom\ngorou", "tine 1\n"}, []string{"panic: boom", "goroutine 1"}},
		{"unterminated last line", []string{"x\nlast"}, []string{"x", "last"}},
		{"hclog record", []string{`{"@level":"error","@message":"cannot reach server","@module":"torch","url":"http://x","code":500}` + "\n"},
			[]string{"[error] cannot reach server code=500 url=http://x"}},
		{"debug records dropped", []string{`{"@level":"debug","@message":"plugin address"}` + "\nreal words\n"}, []string{"real words"}},
		{"not quite JSON", []string{"{oops\n"}, []string{"{oops"}},
		{"blank lines dropped", []string{"\n\n  \nz\n"}, []string{"z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tl tail
			for _, w := range tc.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if got := tl.Lines(); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
	var tl tail
	if tl.String() != "" {
		t.Error("an empty tail says nothing")
	}
	for i := range 100 {
		_, _ = tl.Write([]byte(strings.Repeat("y", 5000) + string(rune('a'+i%26)) + "\n"))
	}
	if l := tl.Lines(); len(l) != tailLines || len(l[0]) != tailLineSize {
		t.Errorf("tail keeps %d lines of %d bytes, want %d of %d", len(l), len(l[0]), tailLines, tailLineSize)
	}
}

// FuzzTail feeds a plugin's stderr, which is outside text, through the tail.
func FuzzTail(f *testing.F) {
	f.Add([]byte("panic: runtime error\n\ngoroutine 1 [running]:\n"))
	f.Add([]byte(`{"@level":"warn","@message":"m","k":{"nested":[1,2]}}` + "\n"))
	f.Add([]byte("no newline at all"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var tl tail
		half := len(in) / 2
		_, _ = tl.Write(in[:half])
		_, _ = tl.Write(in[half:])
		lines := tl.Lines()
		if len(lines) > tailLines+1 {
			t.Fatalf("%d lines kept", len(lines))
		}
		for _, l := range lines {
			if strings.Contains(l, "\n") {
				t.Fatalf("a kept line holds a newline: %q", l)
			}
		}
	})
}

func TestLoggerForwardsLevelsAndArgs(t *testing.T) {
	var lb logBuffer
	l := newLogger(slog.New(slog.NewTextHandler(&lb, &slog.HandlerOptions{Level: slog.LevelInfo})), "torch")
	l.Debug("hidden")
	l.Named("nsys-agent-backend-torch").With("window", "w1").Warn("slow stop", "after", "3s", "odd")
	l.Log(hclog.Error, "broken")
	if l.GetLevel() != hclog.Info || l.IsDebug() || !l.IsWarn() {
		t.Errorf("levels: get %v debug %v warn %v", l.GetLevel(), l.IsDebug(), l.IsWarn())
	}
	l.StandardLogger(nil).Print("from the standard logger")
	out := lb.String()
	for _, want := range []string{
		`level=WARN msg="slow stop" backend=torch window=w1 after=3s extra=odd`,
		`level=ERROR msg=broken backend=torch`,
		`level=INFO msg="from the standard logger" backend=torch`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("a debug record passed an info logger:\n%s", out)
	}
}
