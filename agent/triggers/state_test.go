package triggers

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// An agent restarted on the same data dir that adopts the same target: the flag's
// trigger keeps its fires (max reached stays reached), the API's trigger is armed again
// with its own, and their cooldowns go on.
func TestStateSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "triggers.json")
	flag := Spec{Name: "oom", Log: "CUDA out of memory", Cooldown: "0s", Max: 2}
	api := Spec{Name: "slow", Log: "slow step", Cooldown: "1h"}

	var out lines
	op := &windowsOpened{}
	s := New(Options{Open: op.open, Lines: out.subscribe, StatePath: path, Session: "s1"})
	for _, sp := range []Spec{flag, api} {
		if _, err := s.Add(sp); err != nil {
			t.Fatal(err)
		}
	}
	out.emit("CUDA out of memory")
	waitFor(t, "the first window", func() bool { return s.List()[0].Fired == 1 })
	out.emit("CUDA out of memory")
	out.emit("slow step")
	waitFor(t, "three windows", func() bool { return s.List()[0].Fired == 2 && s.List()[1].Fired == 1 })
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(raw), `"session": "s1"`) || strings.Count(string(raw), `"window": "w`) != 3 {
		t.Fatalf("state file: %v\n%s", err, raw)
	}

	// The restarted agent: the flags give "oom" again; "slow" comes back through Resume.
	var out2 lines
	op2 := &windowsOpened{}
	var logs nsystest.Buffer
	s2 := New(Options{Open: op2.open, Lines: out2.subscribe, StatePath: path, Session: "s1", Log: newTextLogger(&logs)})
	defer s2.Close()
	st, err := s2.Add(flag)
	if err != nil || st.Fired != 2 || len(st.Fires) != 2 {
		t.Fatalf("the flag's trigger after the restart: %+v %v", st, err)
	}
	s2.Resume()
	l := s2.List()
	if len(l) != 2 || l[1].Name != "slow" || l[1].Fired != 1 || l[1].CooldownUntil == nil {
		t.Fatalf("the API's trigger after the restart: %+v", l)
	}
	out2.emit("CUDA out of memory")
	out2.emit("slow step")
	waitFor(t, "both refusals", func() bool {
		l := s2.List()
		return l[0].Skipped[ReasonMaxReached] == 1 && l[1].Skipped[ReasonCooldown] == 1
	})
	if op2.count() != 0 {
		t.Errorf("the restarted agent opened %d windows past max and cooldown", op2.count())
	}
	if !strings.Contains(logs.String(), "trigger restored from the agent's last run") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// A new target (another session) or a changed spec starts from zero; a damaged file is
// said and ignored.
func TestStateNotCarriedOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "triggers.json")
	spec := Spec{Name: "oom", Log: "CUDA out of memory", Max: 1}
	var out lines
	s := New(Options{Open: (&windowsOpened{}).open, Lines: out.subscribe, StatePath: path, Session: "s1"})
	if _, err := s.Add(spec); err != nil {
		t.Fatal(err)
	}
	out.emit("CUDA out of memory")
	waitFor(t, "a window", func() bool { return s.List()[0].Fired == 1 })
	s.Close()

	for _, tc := range []struct {
		name    string
		session string
		spec    Spec
	}{
		{"another target", "s2", spec},
		{"a changed spec", "s1", Spec{Name: "oom", Log: "CUDA out of memory", Max: 3}},
	} {
		s := New(Options{Open: (&windowsOpened{}).open, Lines: (&lines{}).subscribe, StatePath: path, Session: tc.session})
		st, err := s.Add(tc.spec)
		s.Resume()
		if err != nil || st.Fired != 0 || len(s.List()) != 1 {
			t.Errorf("%s: %+v %v", tc.name, s.List(), err)
		}
		s.Close()
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs nsystest.Buffer
	s = New(Options{Open: (&windowsOpened{}).open, Lines: (&lines{}).subscribe, StatePath: path, Session: "s1", Log: newTextLogger(&logs)})
	defer s.Close()
	if st, err := s.Add(spec); err != nil || st.Fired != 0 {
		t.Errorf("after a damaged file: %+v %v", st, err)
	}
	if !strings.Contains(logs.String(), "the triggers' saved state is unreadable") {
		t.Errorf("log:\n%s", logs.String())
	}
	if raw, _ := os.ReadFile(path); !strings.Contains(string(raw), `"session": "s1"`) {
		t.Errorf("the file is written anew:\n%s", raw)
	}
}
