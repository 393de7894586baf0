package triggers

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Reason says why a trigger whose condition held opened no window.
type Reason string

const (
	ReasonCooldown     Reason = "cooldown"      // too soon after its last window
	ReasonMaxReached   Reason = "max-reached"   // it opened all the windows it may
	ReasonWindowActive Reason = "window-active" // another window is requested or capturing
	ReasonTargetDown   Reason = "target-down"   // the server (or the agent) is going or gone
	ReasonStartFailed  Reason = "start-failed"  // the window was refused or its capture failed
)

// Fire is one window a trigger opened.
type Fire struct {
	At     time.Time `json:"at"`
	Window string    `json:"window"`
	Value  *float64  `json:"value,omitempty"` // the number that fired it (none for a plain match)
}

// Skip is a time the condition held and no window opened.
type Skip struct {
	At     time.Time `json:"at"`
	Reason Reason    `json:"reason"`
	Detail string    `json:"detail"`
	Value  *float64  `json:"value,omitempty"`
}

// Status is a trigger as GET /v1/triggers and `nsys-agent triggers` show it.
type Status struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`      // log, metric
	Condition string `json:"condition"` // in words: `metric sglang:gen_throughput < 100`
	Duration  string `json:"duration"`  // of each window it opens
	Cooldown  string `json:"cooldown"`
	Max       int    `json:"max"`
	Fired     int    `json:"fired"`
	// Fires are the windows it opened, oldest first.
	Fires []Fire `json:"fires"`
	// CooldownUntil is when it may fire again, while it cools down.
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
	// LastValue is the newest number its source gave (a log line's or a scrape's).
	LastValue   *float64   `json:"last_value,omitempty"`
	LastValueAt *time.Time `json:"last_value_at,omitempty"`
	// NotFired is the newest time its condition held and no window opened, and why;
	// Skipped counts them by reason.
	NotFired *Skip          `json:"not_fired,omitempty"`
	Skipped  map[Reason]int `json:"skipped,omitempty"`
	// SourceError is why its metric could not be read, while that lasts.
	SourceError string `json:"source_error,omitempty"`
	// Dropped counts log lines that matched while it was still opening a window and found
	// its queue full (they could only have been skipped).
	Dropped int `json:"dropped,omitempty"`
}

// Opener opens a window (the Manager's CreateWindow).
type Opener func(ctx context.Context, req windows.CreateRequest, who windows.Requester) (*windows.Manifest, error)

// trigger is one compiled Spec and what it has done.
type trigger struct {
	c   *compiled
	log *slog.Logger

	mu       sync.Mutex
	fires    []Fire
	last     time.Time // the last fire
	value    *float64
	valueAt  time.Time
	notFired *Skip
	skipped  map[Reason]int
	srcErr   string
	dropped  int
}

func newTrigger(c *compiled, log *slog.Logger) *trigger {
	return &trigger{c: c, log: log, skipped: map[Reason]int{}}
}

// observation is one reading of the trigger's source.
type observation struct {
	at    time.Time
	value float64
	has   bool // false: a plain log match, no number
}

// gate says whether the trigger may fire at now: "" if so, else why not.
func (t *trigger) gate(now time.Time) (Reason, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(t.fires) >= t.c.max:
		return ReasonMaxReached, "it opened its " + strconv.Itoa(t.c.max) + " windows (max)"
	case !t.last.IsZero() && now.Before(t.last.Add(t.c.cooldown)):
		return ReasonCooldown, "cooling down until " + t.last.Add(t.c.cooldown).UTC().Format(time.RFC3339) + " (" + t.c.cooldown.String() + " after its last window)"
	}
	return "", ""
}

// handle is the whole decision for one observation: record it, and if the condition
// holds and the gate is open, open a window through open; true when it opened one.
func (t *trigger) handle(ctx context.Context, o observation, open Opener) bool {
	t.mu.Lock()
	if o.has {
		v := o.value
		t.value, t.valueAt = &v, o.at
	}
	t.mu.Unlock()
	if o.has && !t.c.cond.holds(o.value) {
		return false
	}
	var val *float64
	if o.has {
		v := o.value
		val = &v
	}
	if reason, detail := t.gate(o.at); reason != "" {
		t.skip(o.at, reason, detail, val)
		return false
	}
	req := windows.CreateRequest{Name: t.c.spec.Name, Duration: t.c.duration.String(), Labels: t.labels(val)}
	m, err := open(ctx, req, windows.Local(windows.Fired(t.c.spec.Name)))
	if err != nil {
		reason := ReasonStartFailed
		switch {
		case errors.Is(err, windows.ErrWindowActive):
			reason = ReasonWindowActive
		case errors.Is(err, windows.ErrTargetDown), errors.Is(err, windows.ErrCancelled) && ctx.Err() != nil:
			reason = ReasonTargetDown
		}
		t.skip(o.at, reason, err.Error(), val)
		return false
	}
	t.mu.Lock()
	t.fires = append(t.fires, Fire{At: o.at, Window: m.ID, Value: val})
	t.last = o.at
	t.mu.Unlock()
	t.log.Info("trigger fired: window opened", "trigger", t.c.spec.Name, "condition", t.c.describe(), "window", m.ID, "value", valueString(val))
	return true
}

func (t *trigger) labels(val *float64) map[string]string {
	l := map[string]string{"trigger": t.c.spec.Name, "trigger_condition": t.c.describe()}
	if val != nil {
		l["trigger_value"] = valueString(val)
	}
	return l
}

func valueString(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

func (t *trigger) skip(at time.Time, r Reason, detail string, val *float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := t.notFired == nil || t.notFired.Reason != r
	t.notFired = &Skip{At: at, Reason: r, Detail: detail, Value: val}
	t.skipped[r]++
	if first { // once per change of reason: a log line a second would flood the log
		t.log.Info("trigger held but opened no window", "trigger", t.c.spec.Name, "reason", r, "detail", detail)
	}
}

func (t *trigger) setSourceError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != "" && msg != t.srcErr {
		t.log.Warn("trigger cannot read its metric", "trigger", t.c.spec.Name, "err", err)
	}
	t.srcErr = msg
}

func (t *trigger) drop() {
	t.mu.Lock()
	t.dropped++
	t.mu.Unlock()
}

func (t *trigger) status(now time.Time) Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Name: t.c.spec.Name, Kind: t.c.kind, Condition: t.c.describe(), Duration: t.c.duration.String(),
		Cooldown: t.c.cooldown.String(), Max: t.c.max, Fired: len(t.fires), Fires: append([]Fire{}, t.fires...),
		SourceError: t.srcErr, Dropped: t.dropped}
	if until := t.last.Add(t.c.cooldown); !t.last.IsZero() && now.Before(until) && len(t.fires) < t.c.max {
		u := until.UTC()
		s.CooldownUntil = &u
	}
	if t.value != nil {
		v, at := *t.value, t.valueAt
		s.LastValue, s.LastValueAt = &v, &at
	}
	if t.notFired != nil {
		n := *t.notFired
		s.NotFired = &n
	}
	if len(t.skipped) > 0 {
		s.Skipped = map[Reason]int{}
		for r, n := range t.skipped {
			s.Skipped[r] = n
		}
	}
	return s
}
