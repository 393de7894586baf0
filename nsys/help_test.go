package nsys

import (
	"maps"
	"regexp"
	"strings"
	"testing"
)

func TestHelpOptions(t *testing.T) {
	help := "\t(Deprecated) -b, --backtrace=\n\n\t   WARNING: This switch is no longer supported.\n\n" +
		"\t--cuda-graph-trace=\n\n\t   Possible values...\n\n\t(Deprecated) --cpuctxsw=\n\n" +
		"\t-s, --sample=\n\n\t   WARNING: This switch is no longer supported.\n\t-t, --trace=\n"
	got := helpOptions(help)
	if !got["--cuda-graph-trace"] || !got["--trace"] || got["--backtrace"] || got["--cpuctxsw"] || got["--sample"] {
		t.Errorf("got %v", got)
	}
}

// optionNameRE is what a long option of nsys looks like: words of lower-case letters and
// digits joined by single dashes.
var optionNameRE = regexp.MustCompile(`^--[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// FuzzHelpOptions: the help parser reads another program's output. It must not panic,
// must return only well-formed option names, and must read each option's heading on its
// own: text added after the help (a deprecated option, a plain one) changes nothing but
// that option. Seeds: real help texts (testdata/fuzz/FuzzHelpOptions, made from
// testdata/help/2022.4.2 and the scripted 2025.3.1 fake).
func FuzzHelpOptions(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		help := string(data)
		opts := helpOptions(help)
		for o := range opts {
			if !optionNameRE.MatchString(o) {
				t.Fatalf("not an option name: %q", o)
			}
		}
		deprecated := "\n\t(Deprecated) --zz-fuzz-gone=\n\n\t   WARNING: This switch is no longer supported.\n"
		if got := helpOptions(help + deprecated); !maps.Equal(got, opts) {
			t.Fatalf("a deprecated option added after the text changed the reading:\n%v\nwant\n%v", got, opts)
		}
		want := maps.Clone(opts)
		want["--zz-fuzz-new"] = true
		if got := helpOptions(help + "\n\t--zz-fuzz-new=\n\n\t   A new option.\n"); !maps.Equal(got, want) {
			t.Fatalf("an option added after the text was not read on its own:\n%v\nwant\n%v", got, want)
		}
		caps := parseCaps(helpTexts{Profile: help, Launch: help, Start: help, Stats: help, SessionsList: help})
		if caps.StartLater != opts["--start-later"] || caps.CaptureRangeEnd != opts["--capture-range-end"] ||
			!maps.Equal(caps.LaunchOptions, opts) || !maps.Equal(caps.StartOptions, opts) {
			t.Fatalf("capabilities disagree with the options read: %+v vs %v", caps, opts)
		}
		if v, ok := parseVersion(help); ok && !strings.Contains(help, v) {
			t.Fatalf("version %q is not in the text", v)
		}
	})
}
