package nsys

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// replayRunner answers nsys calls with captured output from a testdata/help folder
// ("--help profile" -> help-profile.txt; see its README).
type replayRunner struct{ dir string }

func (r replayRunner) Binary() string { return filepath.Join(r.dir, "nsys") }

func (r replayRunner) Run(_ context.Context, c Call) (Result, error) {
	name := make([]string, len(c.Args))
	for i, a := range c.Args {
		name[i] = strings.TrimLeft(a, "-")
	}
	out, err := os.ReadFile(filepath.Join(r.dir, strings.Join(name, "-")+".txt"))
	if err != nil {
		return Result{}, fmt.Errorf("no capture of nsys %s: %w", strings.Join(c.Args, " "), err)
	}
	return Result{Stdout: string(out)}, nil
}

// fakeNsys runs the scripted fake (testdata/fake-nsys) with its own state folder.
func fakeNsys(t *testing.T) *ExecRunner {
	t.Helper()
	path, err := filepath.Abs("testdata/fake-nsys")
	if err != nil {
		t.Fatal(err)
	}
	r := NewExecRunner(path)
	r.Env = append(os.Environ(), "FAKE_NSYS_STATE="+t.TempDir())
	return r
}

// probeReading is the part of Info that depends on the help texts alone.
type probeReading struct {
	Version string `json:"version"`
	Caps    Caps   `json:"capabilities"`
}

// TestProbeGolden runs Probe over captured help texts (testdata/help) and compares what
// it finds with the golden files.
func TestProbeGolden(t *testing.T) {
	cases := []struct {
		name   string
		runner Runner
		check  func(t *testing.T, c Caps)
	}{
		{"2022.4.2", replayRunner{"testdata/help/2022.4.2"}, func(t *testing.T, c Caps) {
			// Measured facts about Debian's 2022.4.2 (DESIGN.md).
			if c.StartLater || c.NewStatsNames || c.SessionsListJSON {
				t.Errorf("2022.4.2 has no start-later, old stats names, no sessions list -f json: %+v", c)
			}
			if c.LaunchAccepts("--sample") || c.LaunchAccepts("--cpuctxsw") || c.LaunchAccepts("--backtrace") {
				t.Errorf("2022.4.2 launch lists --sample, --cpuctxsw, --backtrace as no longer supported")
			}
			if !c.StartOptions["--sample"] || !c.StartOptions["--cpuctxsw"] || !c.LaunchAccepts("--session-new") || !c.LaunchAccepts("--trace") {
				t.Errorf("start takes --sample/--cpuctxsw, launch takes --session-new/--trace: %+v", c)
			}
			if !c.CaptureRangeEnd || !c.SessionsListHeaderFlag {
				t.Errorf("2022.4.2 has --capture-range-end and sessions list -p: %+v", c)
			}
		}},
		{"2025.3.1-fake", fakeNsys(t), func(t *testing.T, c Caps) {
			if !c.StartLater || !c.NewStatsNames || !c.LaunchAccepts("--sample") || c.SessionsListJSON {
				t.Errorf("2025.3.1: start-later, new stats names, launch takes --sample, no -f json: %+v", c)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := Probe(context.Background(), c.runner)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, info.Caps)
			got, _ := json.MarshalIndent(probeReading{info.Version, info.Caps}, "", "  ")
			golden := filepath.Join("testdata", "help", c.name+".json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("missing golden file (run go test ./nsys -run ProbeGolden -update): %v", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}
