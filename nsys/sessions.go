package nsys

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// State is a session state as `nsys sessions list` prints it.
type State string

// States seen on nsys 2022.4.2 and 2025.3.1 (DESIGN.md, fixtures/nsys-sessions).
const (
	StateLaunched          State = "Launched"
	StateDelayedCollection State = "DelayedCollection"
	StateCollection        State = "Collection"
	StateGeneration        State = "Generation"
	StateStartRange        State = "StartRange"
	StateRangeCollection   State = "RangeCollection"
	StateRangeGeneration   State = "RangeGeneration"
	StateStarted           State = "Started"
	StateIdle              State = "Idle"
	StateShutdown          State = "Shutdown"
)

// Collecting reports whether a capture is running in this state.
func (s State) Collecting() bool { return s == StateCollection || s == StateRangeCollection }

// Generating reports whether a report is being written in this state.
func (s State) Generating() bool { return s == StateGeneration || s == StateRangeGeneration }

// Session is one row of `nsys sessions list`.
type Session struct {
	ID     string `json:"id"`
	Time   string `json:"time"`
	State  State  `json:"state"`
	Launch string `json:"launch"`
	Name   string `json:"name"`
}

// ParseSessions parses the output of `nsys sessions list` (with or without the header,
// any column widths). Columns ID, TIME, STATE and LAUNCH never hold spaces and are
// right-aligned; NAME is the rest of the line after one space and may hold spaces.
// A line that does not fit is an error naming its line number; output is never guessed.
func ParseSessions(out []byte) ([]Session, error) {
	var sessions []Session
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if isHeader(line) {
			continue
		}
		s, err := parseSessionLine(line)
		if err != nil {
			return nil, fmt.Errorf("nsys sessions list, line %d %q: %w", n, line, err)
		}
		sessions = append(sessions, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading nsys sessions list: %w", err)
	}
	return sessions, nil
}

func isHeader(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 3 && f[0] == "ID" && f[1] == "TIME" && f[2] == "STATE"
}

func parseSessionLine(line string) (Session, error) {
	rest := line
	var cols [4]string
	for i := range cols {
		rest = strings.TrimLeft(rest, " \t")
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			if i < 3 {
				return Session{}, fmt.Errorf("expected ID TIME STATE LAUNCH NAME, found %d columns", i+1)
			}
			end = len(rest)
		}
		cols[i], rest = rest[:end], rest[end:]
	}
	if !isDigits(cols[0]) {
		return Session{}, fmt.Errorf("session ID %q is not a number", cols[0])
	}
	if !isClock(cols[1]) {
		return Session{}, fmt.Errorf("time %q is not [h:]mm:ss", cols[1])
	}
	if !isLetters(cols[2]) {
		return Session{}, fmt.Errorf("state %q is not a word", cols[2])
	}
	if !isDigits(cols[3]) {
		return Session{}, fmt.Errorf("launch count %q is not a number", cols[3])
	}
	// One separator space, then the name (which may itself start with or hold spaces).
	name := rest
	if len(name) > 0 && (name[0] == ' ' || name[0] == '\t') {
		name = name[1:]
	}
	if name == "" {
		return Session{}, fmt.Errorf("session has no name")
	}
	return Session{ID: cols[0], Time: cols[1], State: State(cols[2]), Launch: cols[3], Name: name}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func isLetters(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// isClock accepts mm:ss and h:mm:ss (long-running sessions).
func isClock(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || !isDigits(p) {
			return false
		}
	}
	return true
}

// Lookup returns the session with this name. When several rows share the name (a
// cuda-profiler session shows one row per range state), the last one wins.
func Lookup(sessions []Session, name string) (Session, bool) {
	var found Session
	ok := false
	for _, s := range sessions {
		if s.Name == name {
			found, ok = s, true
		}
	}
	return found, ok
}

// Names lists session names, for error messages.
func Names(sessions []Session) []string {
	names := make([]string, 0, len(sessions))
	for _, s := range sessions {
		names = append(names, s.Name)
	}
	return names
}
