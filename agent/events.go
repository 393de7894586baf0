package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// DefaultHeartbeat is how often an idle event stream gets a comment line, so proxies
// and clients can tell a quiet stream from a dead one.
const DefaultHeartbeat = 15 * time.Second

// sseWriter writes server-sent events and flushes each one.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise buffer the stream
	rc := http.NewResponseController(w)
	// A stream outlives any server WriteTimeout; errors mean "not supported", which is fine.
	_ = rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: rc}
}

// comment writes ": text" and flushes; clients ignore it.
func (s *sseWriter) comment(text string) error {
	if _, err := fmt.Fprintf(s.w, ": %s\n\n", text); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one named event with a JSON payload on a single data line.
func (s *sseWriter) event(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// json.Marshal never emits raw newlines, so one data line holds the whole payload;
	// the name comes from our own constants but is cleaned anyway.
	name = strings.NewReplacer("\n", "", "\r", "").Replace(name)
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

// serveEvents streams svc's events until the client goes away, the subscription ends,
// or the server's base context is cancelled (the way `run` ends streams on shutdown).
func (a *api) serveEvents(w http.ResponseWriter, r *http.Request) {
	events, cancel := a.svc.Subscribe()
	defer cancel()
	sse := newSSEWriter(w)
	// The first comment tells the client the subscription is in place: events after it
	// are not missed.
	if err := sse.comment("subscribed"); err != nil {
		return
	}
	tick := time.NewTicker(a.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if err := sse.comment("heartbeat"); err != nil {
				return
			}
		case ev, ok := <-events:
			if !ok {
				return
			}
			name := ev.Type
			if name == "" {
				name = "window"
			}
			if err := sse.event(name, ev); err != nil {
				return
			}
		}
	}
}
