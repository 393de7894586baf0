package pluginhost

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
)

// tailLines is how much of a plugin's stderr an error quotes: enough for a Go panic's
// first lines or a few log records, short enough to read in a window's error.
const (
	tailLines    = 12
	tailLineSize = 400
)

// tail keeps the last lines a plugin wrote on stderr (go-plugin copies them here as
// well as to the logger), to say why a plugin did not start or why it died.
type tail struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

// Write takes stderr as go-plugin copies it: lines, each followed by "\n".
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(t.partial) < tailLineSize {
				t.partial = append(t.partial, p[:min(len(p), tailLineSize-len(t.partial))]...)
			}
			break
		}
		if len(t.partial) < tailLineSize {
			t.partial = append(t.partial, p[:min(i, tailLineSize-len(t.partial))]...)
		}
		t.add(string(t.partial))
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *tail) add(line string) {
	line = readable(strings.TrimSpace(line))
	if line == "" || strings.HasPrefix(line, "[debug] ") || strings.HasPrefix(line, "[trace] ") {
		// go-plugin's own chatter on the plugin's side (mTLS, addresses): the log has it;
		// an error quoting the tail wants the plugin's last real words.
		return
	}
	if len(t.lines) == tailLines {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

// Lines returns the kept lines, oldest first.
func (t *tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string{}, t.lines...)
	if len(t.partial) > 0 {
		out = append(out, readable(string(t.partial)))
	}
	return out
}

// String is the tail for an error message: "" when the plugin said nothing.
func (t *tail) String() string {
	l := t.Lines()
	if len(l) == 0 {
		return ""
	}
	return "; its last output:\n" + strings.Join(l, "\n")
}

// readable turns an hclog JSON record (what a go-plugin plugin logs by default) into
// "[level] message key=value"; any other line stays as it is.
func readable(line string) string {
	if !strings.HasPrefix(line, "{") {
		return line
	}
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) != nil {
		return line
	}
	msg, ok := rec["@message"].(string)
	if !ok {
		return line
	}
	var b strings.Builder
	if lv, ok := rec["@level"].(string); ok {
		b.WriteString("[" + lv + "] ")
	}
	b.WriteString(msg)
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		if v := rec[k]; !strings.HasPrefix(k, "@") {
			b.WriteString(" " + k + "=")
			if s, ok := v.(string); ok {
				b.WriteString(s)
			} else {
				raw, _ := json.Marshal(v)
				b.Write(raw)
			}
		}
	}
	return b.String()
}
