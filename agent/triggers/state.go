package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"slices"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/internal/regularfile"
)

// A Set with Options.StatePath keeps its triggers and the windows they opened in that file
// (rewritten whole, atomically, on every Add and every fire), for the target of
// Options.Session. An agent restarted on the same data dir that adopts the same target
// (same session) arms them again with what they had done: a trigger that opened its max
// opens no more, one cooling down stays cooling down, and one added through the API is
// armed again. A new target (another session) starts every trigger from zero: max counts
// a server's windows, not a data dir's.

// state is the file's content.
type state struct {
	Session  string       `json:"session"`
	Triggers []savedState `json:"triggers"`
}

type savedState struct {
	Spec  Spec   `json:"spec"` // named
	Fires []Fire `json:"fires"`
}

// maxStateBytes bounds the file: 32 triggers × 1 000 fires × ~120 bytes is under 4 MiB.
const maxStateBytes = 8 << 20

// loadState reads the saved triggers of session; none when the file is absent or is
// another target's. A damaged file is an error (the Set starts empty and says so).
func loadState(path, session string) ([]savedState, error) {
	f, err := regularfile.Open(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st state
	// A file over the bound reads as cut short: a decode error, as for any damaged file.
	if err := json.NewDecoder(io.LimitReader(f, maxStateBytes)).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Session != session {
		return nil, nil
	}
	return st.Triggers, nil
}

// save writes every trigger's spec and fires. A failure is logged: the triggers work on,
// only a restart would forget what they did.
func (s *Set) save() {
	if s.o.StatePath == "" {
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	list := append([]*trigger(nil), s.list...)
	s.mu.Unlock()
	st := state{Session: s.o.Session, Triggers: make([]savedState, 0, len(list))}
	for _, t := range list {
		t.mu.Lock()
		st.Triggers = append(st.Triggers, savedState{Spec: t.c.spec, Fires: append([]Fire{}, t.fires...)})
		t.mu.Unlock()
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = atomicfile.Write(s.o.StatePath, append(b, '\n'), 0o600)
	}
	if err != nil {
		s.o.Log.Warn("saving the triggers' state failed: a restart would count their windows from zero", "path", s.o.StatePath, "err", err)
	}
}

// restoreLocked gives t what its saved namesake did, when their specs are the same
// (s.mu held).
func (s *Set) restoreLocked(t *trigger) {
	for i, sv := range s.saved {
		if sv.Spec.Name != t.c.spec.Name {
			continue
		}
		s.saved = append(s.saved[:i], s.saved[i+1:]...)
		if !reflect.DeepEqual(sv.Spec, t.c.spec) {
			s.o.Log.Info("trigger changed since the agent's last run: it counts its windows from zero", "trigger", t.c.spec.Name)
			return
		}
		t.mu.Lock()
		t.fires = append([]Fire(nil), sv.Fires...)
		if n := len(t.fires); n > 0 {
			t.last = t.fires[n-1].At
		}
		t.mu.Unlock()
		s.o.Log.Info("trigger restored from the agent's last run", "trigger", t.c.spec.Name, "fired", len(sv.Fires), "max", t.c.max)
		return
	}
}

// Resume arms the saved triggers that no Add took (those added through the API in the
// agent's last run), each with what it had done. Call it once the flags' triggers are
// added. A saved trigger this agent cannot arm (a metric trigger without --server-url
// now) is logged and dropped.
func (s *Set) Resume() {
	s.mu.Lock()
	rest := slices.Clone(s.saved) // Add takes each from s.saved as it arms it
	s.mu.Unlock()
	for _, sv := range rest {
		if _, err := s.Add(sv.Spec); err != nil {
			s.o.Log.Warn("a trigger of the agent's last run cannot be armed again", "trigger", sv.Spec.Name, "err", err)
		}
	}
	s.mu.Lock()
	s.saved = nil
	s.mu.Unlock()
}
