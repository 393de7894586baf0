package nsys

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files from the current parser")

// fixtureDir holds real `nsys sessions list` outputs of nsys 2022.4.2 and 2025.3.1 (.txt)
// and what the parser makes of them (.json, rewritten by -update).
const fixtureDir = "testdata/sessions"

func TestParseSessionsGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSessions(raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			gotJSON, _ := json.MarshalIndent(got, "", "  ")
			golden := filepath.Join(fixtureDir, name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, append(gotJSON, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("missing golden file (run go test ./nsys -run Golden -update): %v", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(gotJSON)) {
				t.Errorf("%s: got\n%s\nwant\n%s", name, gotJSON, want)
			}
		})
	}
}

func TestParseSessionsSpecifics(t *testing.T) {
	read := func(name string) []Session {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSessions(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := read("2022.4.2-empty.txt"); len(s) != 0 {
		t.Errorf("empty list: got %d sessions", len(s))
	}
	foreign := read("2022.4.2-foreign.txt")
	if len(foreign) != 3 {
		t.Fatalf("foreign: got %d sessions, want 3", len(foreign))
	}
	if s, ok := Lookup(foreign, "dl"); !ok || s.State != StateCollection || s.ID != "1128098" || s.Launch != "1" {
		t.Errorf("dl: got %+v, %v", s, ok)
	}
	long := read("2022.4.2-longname.txt")
	if s, ok := Lookup(long, "widthtest_with_a_fairly_long_session_name_123"); !ok || s.State != StateLaunched {
		t.Errorf("long name: got %+v, %v", s, ok)
	}
	states := read("2022.4.2-states.txt")
	if s, ok := Lookup(states, "[default]"); !ok || s.State != StateStarted || s.Launch != "0" {
		t.Errorf("[default]: got %+v, %v", s, ok)
	}
	noHeader := read("2025.3.1-range-noheader.txt")
	if len(noHeader) != 2 || noHeader[1].State != StateRangeCollection || !noHeader[1].State.Collecting() {
		t.Errorf("no header: got %+v", noHeader)
	}
	delayed := read("2025.3.1-delayed.txt")
	if len(delayed) != 1 || delayed[0].State != StateDelayedCollection || delayed[0].Name != "tst" {
		t.Errorf("delayed: got %+v", delayed)
	}
}

func TestParseSessionsEdgeCases(t *testing.T) {
	cases := []struct {
		name, in string
		want     []Session
		wantErr  bool
	}{
		{name: "name with spaces", in: "  12  00:01  Launched  1 my session\n",
			want: []Session{{ID: "12", Time: "00:01", State: StateLaunched, Launch: "1", Name: "my session"}}},
		{name: "hours", in: "  12  1:02:03  Collection  1 s\n",
			want: []Session{{ID: "12", Time: "1:02:03", State: StateCollection, Launch: "1", Name: "s"}}},
		{name: "crlf and blank lines", in: "ID TIME STATE LAUNCH NAME\r\n\r\n  7  00:00  Idle  0 x\r\n",
			want: []Session{{ID: "7", Time: "00:00", State: StateIdle, Launch: "0", Name: "x"}}},
		{name: "garbage", in: "Error: something broke\n", wantErr: true},
		{name: "missing name", in: "  12  00:01  Launched  1\n", wantErr: true},
		{name: "non-numeric id", in: "  ab  00:01  Launched  1 x\n", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSessions([]byte(c.in))
			if c.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(c.want)
			if string(g) != string(w) {
				t.Errorf("got %s want %s", g, w)
			}
		})
	}
}

// FuzzParseSessions: the parser reads another program's output and must never panic;
// whatever it accepts must round-trip through its own invariants.
func FuzzParseSessions(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.txt"))
	for _, file := range files {
		if raw, err := os.ReadFile(file); err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sessions, err := ParseSessions(data)
		if err != nil {
			return
		}
		for _, s := range sessions {
			if !isDigits(s.ID) || !isDigits(s.Launch) || s.Name == "" || !isLetters(string(s.State)) {
				t.Fatalf("accepted an invalid row: %+v", s)
			}
		}
	})
}
