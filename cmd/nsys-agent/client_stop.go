package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

// pollEvery is the fallback when the agent's event stream is unavailable.
const pollEvery = 300 * time.Millisecond

func stopCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "stop",
		Usage:     "stop a window (default: the active one) and wait until its report is ready",
		ArgsUsage: "[WINDOW]",
		Description: `Stops the window (by default the one capturing) and follows its finalizing (nsys stop,
import, export) with a progress bar on stderr until its report is ready. Exit 1 if the
window failed. A scheduled window (start --at) that has not started is cancelled (exit 0);
one that is finalizing already (its --duration ran out) is waited for.

A group id (g-...) stops the group window's member on every agent given (a member
scheduled and not started yet is cancelled) and waits for each report; a note names
members the group's record lists that --agent lacks.

   nsys-agent stop
   nsys-agent stop warmup -o json
   nsys-agent stop --no-wait --agent gpu1:7477,gpu2:7477
   nsys-agent stop g-20250102-150405-ab12 --agent gpu1:7477,gpu2:7477`,
		Flags: clientFlags(
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the agent accepted the stop; finalizing goes on"},
		),
		Action: runStop,
	})
}

func runStop(c *cli.Context) error {
	pos, err := positional(c, 0, 1, "at most one WINDOW")
	if err != nil {
		return err
	}
	word := "active"
	if len(pos) == 1 {
		word = pos[0]
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	noWait := c.Bool("no-wait")
	// One bar on stderr makes sense for one agent; several agents report in the table.
	var bar *progressBar
	if len(s.agents) == 1 && !noWait {
		bar = newProgressBar(c.App.ErrWriter)
	}
	var outs []outcome
	if isGroupRef(word) {
		outs = stopGroup(c.Context, s, word, noWait, bar)
	} else {
		outs = fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
			return stopWindow(ctx, s, ac, word, noWait, bar)
		})
	}
	if isGroupRef(word) {
		skipLeftOut(outs)
		// The members' windows carry the group's record: say which members were not given.
		if rec := newestRecord(outs); rec != nil {
			s.noteMissingMembers(rec, "stop")
		}
	}
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) { printManifest(w, v.(*windows.Manifest)) })
}

// stopWindow stops the window the user named on one agent and, unless noWait, follows
// it to its end. A window that is finalizing already (its duration ran out, someone
// else stopped it) is waited for; one that ended is reported as it ended.
func stopWindow(ctx context.Context, s *clientSetup, ac *apiClient, word string, noWait bool, bar *progressBar) (any, error) {
	target, named := word, word != "active" && word != "-"
	if named {
		// The agent knows "active" itself; a name or "latest" becomes an id here.
		id, err := ac.resolveWindow(ctx, word)
		if err != nil {
			return nil, err
		}
		target = id
	}
	var m windows.Manifest
	err := ac.call(ctx, http.MethodPost, "/v1/windows/"+url.PathEscape(target)+"/stop", nil, &m)
	var ce *clientError
	if errors.As(err, &ce) && ce.Code == agent.CodeNoWindow {
		// Not capturing: which window did the user mean, and where is it now?
		var past *windows.Manifest
		if !named { // "active": the newest window, if it is finalizing
			if ws, lerr := ac.windows(ctx); lerr == nil && len(ws) > 0 && ws[0].State == windows.StateFinalizing {
				past = &ws[0]
			}
		} else if w, gerr := ac.window(ctx, target); gerr == nil {
			past = w
		}
		switch {
		case past == nil || past.State == windows.StateRequested || past.State == windows.StateCapturing:
			return nil, err
		case past.State == windows.StateFinalizing:
			s.notef(ac, "window %s is already finalizing%s; waiting for it", past.ID, whyStopped(past))
			if noWait {
				return past, nil
			}
			return followWindow(ctx, ac, past.ID, bar, 0)
		default:
			s.notef(ac, "window %s had already ended: %s", past.ID, past.State)
			return past, windowOutcome(ac, past)
		}
	}
	if err != nil {
		return nil, err
	}
	if m.State == windows.StateCancelled {
		// A scheduled window: the stop cancelled it before it began, as asked.
		s.notef(ac, "window %s was cancelled before it started: it captured nothing", m.ID)
		return &m, nil
	}
	if noWait {
		return &m, nil
	}
	return followWindow(ctx, ac, m.ID, bar, 0)
}

// whyStopped says what stopped a window, for a note: " (its duration ran out)".
func whyStopped(m *windows.Manifest) string {
	if m.StoppedBy == nil {
		return ""
	}
	switch m.StoppedBy.Trigger {
	case windows.TriggerDuration:
		return " (its duration ran out)"
	case windows.TriggerSteps:
		return " (its steps ran out)"
	case windows.TriggerShutdown:
		return " (the agent is shutting down)"
	}
	if who := requesterString(m.StoppedBy); who != "" {
		return " (stopped by " + who + ")"
	}
	return ""
}

// windowOutcome is the error for a window that ended without a report.
func windowOutcome(ac *apiClient, m *windows.Manifest) error {
	switch m.State {
	case windows.StateFailed:
		msg := m.Error
		if msg == "" {
			msg = "no error recorded"
		}
		return &clientError{Agent: ac.base, Message: fmt.Sprintf("window %s failed: %s", m.ID, msg),
			Hint: "see " + ac.command("show", m.ID) + " for its warnings and any partial artifacts"}
	case windows.StateCancelled:
		return &clientError{Agent: ac.base, Message: fmt.Sprintf("window %s was cancelled: it has no report", m.ID)}
	}
	return nil
}

// waitWindow follows the window until it reaches a terminal state, through the event
// stream when the agent has one, and by asking for the window every recheckEvery as well:
// the agent drops events for a subscriber that falls behind, and a lost final event must
// not leave the wait hanging while heartbeats keep the stream open. update sees every new
// manifest.
func waitWindow(ctx context.Context, ac *apiClient, id string, update func(*windows.Manifest)) (*windows.Manifest, error) {
	// Subscribe before reading the state, so nothing between the two is missed.
	stream, _ := ac.events(ctx) // no stream: poll
	events := make(chan *windows.Manifest)
	streamDone := make(chan struct{})
	if stream != nil {
		// On return the reader must end too, even while it holds an event nobody takes
		// any more (the wait ended by a poll): say so, close the stream, wait for it.
		left, readerDone := make(chan struct{}), streamDone
		defer func() {
			close(left)
			stream.Close()
			<-readerDone
		}()
		go func() {
			defer close(streamDone)
			for {
				ev, err := stream.next()
				if err != nil {
					return // stream ended: polling carries on
				}
				if ev.Window == nil || ev.Window.ID != id {
					continue
				}
				select {
				case events <- ev.Window:
				case <-ctx.Done():
					return
				case <-left:
					return
				}
			}
		}()
	} else {
		close(streamDone)
	}
	m, err := ac.window(ctx, id)
	if err != nil {
		return nil, err
	}
	update(m)
	if m.State.Terminal() {
		return m, nil
	}
	every := recheckEvery
	if stream == nil {
		every = pollEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case w := <-events:
			update(w)
			if w.State.Terminal() {
				return w, nil
			}
			continue
		case <-streamDone:
			streamDone = nil // closed: stop selecting it, poll from now on
			tick.Reset(pollEvery)
			continue
		case <-tick.C:
		}
		if m, err = ac.window(ctx, id); err != nil {
			return nil, err
		}
		update(m)
		if m.State.Terminal() {
			return m, nil
		}
	}
}

// recheckEvery is how often a wait that follows the event stream also asks for the window
// (a variable for tests).
var recheckEvery = 5 * time.Second

// eventStream reads server-sent events from GET /v1/events.
type eventStream struct {
	body    io.ReadCloser
	sc      *bufio.Scanner
	cancel  context.CancelFunc
	started bool // the first line was read (a byte-order mark is dropped from it)
}

func (ac *apiClient) events(ctx context.Context) (*eventStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := ac.newRequest(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := ac.send(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s/v1/events: not an event stream", ac.base)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // a manifest with a summary can be large
	sc.Split(scanSSELines)
	return &eventStream{body: resp.Body, sc: sc, cancel: cancel}, nil
}

// scanSSELines splits an event stream into lines as the text/event-stream format has
// them: ended by CRLF, LF or a lone CR (the fuzzer found a CR-only stream read as one
// endless line). A CR at the end of the buffer waits for more data: it may be a CRLF.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need the next byte
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// next returns the next event with a JSON payload, skipping comments (heartbeats).
func (s *eventStream) next() (windows.Event, error) {
	var data strings.Builder
	for s.sc.Scan() {
		line := s.sc.Text()
		if !s.started {
			// The stream may begin with a byte-order mark, which is not part of the line.
			line, s.started = strings.TrimPrefix(line, "\ufeff"), true
		}
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var ev windows.Event
			if err := json.Unmarshal([]byte(data.String()), &ev); err != nil {
				return ev, fmt.Errorf("bad event: %w", err)
			}
			return ev, nil
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := s.sc.Err(); err != nil {
		return windows.Event{}, err
	}
	return windows.Event{}, io.EOF
}

func (s *eventStream) Close() {
	s.cancel()
	s.body.Close()
}

// progressBar draws the finalize progress on a terminal, or one line per change
// elsewhere (CI logs). A nil bar draws nothing.
type progressBar struct {
	w    io.Writer
	tty  bool
	last string
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, tty: isTerminal(w)}
}

const barWidth = 24

func (p *progressBar) update(m *windows.Manifest) {
	if p == nil {
		return
	}
	line := progressLine(m)
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progressBar) done() {
	if p != nil && p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

func progressLine(m *windows.Manifest) string {
	frac, step := 0.0, ""
	switch {
	case m.State == windows.StateReady:
		frac, step = 1, "done"
	case m.State.Terminal():
		step = m.Error
	case m.Progress != nil:
		frac, step = m.Progress.Fraction, m.Progress.Step
	case m.State == windows.StateCapturing && m.Duration != "":
		step = "for " + m.Duration
	case m.State == windows.StateCapturing && m.Steps > 0:
		step = fmt.Sprintf("for %d steps", m.Steps)
	case m.State == windows.StateRequested:
		step = "not started yet"
	}
	frac = min(max(frac, 0), 1)
	n := int(frac*barWidth + 0.5)
	return strings.TrimRight(fmt.Sprintf("%s %-10s [%s%s] %3.0f%% %s", m.ID, m.State,
		strings.Repeat("#", n), strings.Repeat(".", barWidth-n), 100*frac, step), " ")
}
