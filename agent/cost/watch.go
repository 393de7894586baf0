package cost

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// Throughput readings are timed on the agent's clock (hostclock), the clock of the
// manifests whose started_at and stopped_at cut the series into spans: with the clock-shift
// test hook on, the machine's clock would put every span off by the shift.

// Watcher turns every finished window into a cost: when a window that captured settles
// (ready or failed), it waits for the "after" span and records the three readings on it.
type Watcher struct {
	series  *Series
	source  string
	measure Measure
	set     func(id string, cost json.RawMessage) error
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	pending map[string]*time.Timer
	closed  bool
	wg      sync.WaitGroup
}

// NewWatcher records costs measured on s (fed from source) through set (the Manager's
// SetCost).
func NewWatcher(s *Series, source string, m Measure, set func(string, json.RawMessage) error, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{series: s, source: source, measure: m.withDefaults(), set: set, log: log, now: hostclock.Now, pending: map[string]*time.Timer{}}
}

// Observe is the Manager's OnChange hook: it sees every saved state of every window, in
// order, and never drops one (unlike an event subscription).
func (w *Watcher) Observe(old windows.State, c windows.Manifest) {
	if old == c.State || (c.State != windows.StateReady && c.State != windows.StateFailed) || c.StartedAt == nil || c.FinishedAt == nil || len(c.Cost) > 0 {
		return
	}
	span := Span{Started: *c.StartedAt, Stopped: *c.FinishedAt, Ready: *c.FinishedAt}
	if c.StoppedAt != nil {
		span.Stopped = *c.StoppedAt
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.pending[c.ID] != nil {
		return
	}
	id := c.ID
	delay := span.Ready.Add(w.measure.After).Sub(w.now())
	w.wg.Add(1)
	w.pending[id] = time.AfterFunc(max(delay, 0), func() {
		defer w.wg.Done()
		w.record(id, span)
	})
}

func (w *Watcher) record(id string, span Span) {
	w.mu.Lock()
	delete(w.pending, id)
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return
	}
	res := Compute(w.series, w.source, span, w.measure)
	raw, err := json.Marshal(res)
	if err == nil {
		err = w.set(id, raw)
	}
	if err != nil {
		w.log.Warn("recording a window's cost", "window", id, "err", err)
		return
	}
	if res.Slowdown != "" {
		w.log.Warn("the server stayed slower after a window", "window", id, "detail", res.Slowdown)
	}
}

// Close drops the windows still waiting for their "after" span (the agent is going).
func (w *Watcher) Close() {
	w.mu.Lock()
	w.closed = true
	for id, t := range w.pending {
		if t.Stop() {
			w.wg.Done()
		}
		delete(w.pending, id)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// FollowLines returns a line subscriber (the target supervisor's Subscribe) that adds
// every throughput the lines carry to s.
func FollowLines(src *LogSource, s *Series) func(line string) {
	return func(line string) {
		if v, ok := src.Value(line); ok {
			s.Add(hostclock.Now(), v)
		}
	}
}

// Scrape reads src every interval into s until ctx ends. Failures are logged once per
// kind of failure, not once a second.
func Scrape(ctx context.Context, src *MetricSource, s *Series, interval time.Duration, log *slog.Logger) {
	var lastErr string
	Poll(ctx, src, interval, hostclock.Now, func(at time.Time, v float64, err error) {
		switch {
		case err == nil:
			s.Add(at, v)
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			log.Warn("reading the server's throughput", "err", err)
		}
	})
}

// Poll scrapes src at once and then every interval (default 1 s) until ctx ends, and
// hands each reading or failure to each. A counter's first reading (ErrNoValue) and the
// failure of a scrape cut short by ctx are not handed on.
func Poll(ctx context.Context, src *MetricSource, interval time.Duration, now func() time.Time, each func(at time.Time, v float64, err error)) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		at := now()
		v, err := src.Scrape(ctx, at)
		if !errors.Is(err, ErrNoValue) && (err == nil || ctx.Err() == nil) {
			each(at, v, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
