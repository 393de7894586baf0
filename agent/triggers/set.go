package triggers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// DefaultScrapeEvery is how often a metric trigger reads /metrics: "every few seconds"
// (a server's exposition is a few hundred kB; once a second is what the cost watcher
// does for the one metric it reads).
const DefaultScrapeEvery = 2 * time.Second

// Options wire a Set.
type Options struct {
	Open Opener // required: opens a window (the Manager's CreateWindow)
	// Lines subscribes to the target's output lines (the Supervisor's Subscribe); nil:
	// log triggers are refused.
	Lines func(fn func(line string)) (cancel func())
	// ServerURL is the server's own address; metric triggers read ServerURL/metrics. "":
	// metric triggers are refused.
	ServerURL   string
	ScrapeEvery time.Duration    // default DefaultScrapeEvery
	Client      *http.Client     // for scrapes; nil: a client with a 5 s timeout
	Now         func() time.Time // nil: time.Now (tests give a fake clock)
	Log         *slog.Logger
	// StatePath keeps the triggers and their windows across agent restarts for the
	// target of Session (see state.go); "": kept in memory only.
	StatePath string
	Session   string
}

// Set is the agent's triggers: each watches its source in its own goroutine until Close.
type Set struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	list   []*trigger
	stops  []func()
	closed bool
	saved  []savedState // from the last run, not yet armed again (Add, Resume)

	saveMu sync.Mutex
}

// New returns an empty Set.
func New(o Options) *Set {
	if o.ScrapeEvery <= 0 {
		o.ScrapeEvery = DefaultScrapeEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Set{o: o, ctx: ctx, cancel: cancel}
	if o.StatePath != "" {
		saved, err := loadState(o.StatePath, o.Session)
		if err != nil {
			o.Log.Warn("the triggers' saved state is unreadable: every trigger counts its windows from zero", "err", err)
		}
		s.saved = saved
	}
	return s
}

// ErrClosed: the Set is closed (the agent is shutting down).
var ErrClosed = errors.New("triggers: the agent is shutting down")

// Add checks spec, names it if it has no name, gives it what its namesake of the agent's
// last run did (same spec, same target), and starts watching its source.
func (s *Set) Add(spec Spec) (Status, error) {
	c, err := compile(spec)
	if err != nil {
		return Status{}, err
	}
	switch {
	case c.kind == KindLog && s.o.Lines == nil:
		return Status{}, invalidf("log: this agent has no target output to watch")
	case c.kind == KindMetric && s.o.ServerURL == "":
		return Status{}, invalidf("metric: the agent knows no server URL to scrape; run it with --server-url (the server's own HTTP address)")
	}
	t, err := s.arm(c)
	if err != nil {
		return Status{}, err
	}
	s.save()
	return t.status(s.o.Now()), nil
}

func (s *Set) arm(c *compiled) (*trigger, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, &windows.Error{Kind: windows.ErrTargetDown, Msg: ErrClosed.Error(), Cause: ErrClosed}
	case len(s.list) >= MaxTriggers:
		return nil, invalidf("this agent has %d triggers, the most it keeps", MaxTriggers)
	}
	if c.spec.Name == "" {
		c.spec.Name = s.freeName(c.kind)
	} else if s.find(c.spec.Name) != nil {
		return nil, invalidf("name: a trigger named %q exists; pick another name", c.spec.Name)
	}
	t := newTrigger(c, s.o.Log)
	s.restoreLocked(t) // before it watches: its first observation already sees its past
	s.list = append(s.list, t)
	if c.kind == KindLog {
		s.stops = append(s.stops, s.watchLog(t))
	} else {
		s.watchMetric(t)
	}
	s.o.Log.Info("trigger armed", "trigger", c.spec.Name, "condition", c.describe(), "duration", c.duration, "cooldown", c.cooldown, "max", c.max)
	return t, nil
}

func (s *Set) find(name string) *trigger {
	for _, t := range s.list {
		if t.c.spec.Name == name {
			return t
		}
	}
	return nil
}

func (s *Set) freeName(kind string) string {
	base := defaultLogName
	if kind == KindMetric {
		base = defaultMetName
	}
	name := base
	for i := 2; s.find(name) != nil; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	return name
}

// List is every trigger's status, in the order they were added.
func (s *Set) List() []Status {
	s.mu.Lock()
	list := append([]*trigger(nil), s.list...)
	s.mu.Unlock()
	now := s.o.Now()
	out := make([]Status, 0, len(list))
	for _, t := range list {
		out = append(out, t.status(now))
	}
	return out
}

// Close stops every trigger and waits for them; a window one is opening right now is
// left to the state machine (the Manager closes it with the others).
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	s.cancel()
	s.wg.Wait()
}

// queueLen bounds the lines waiting while a trigger opens a window (a start can queue
// up to 20 s behind a stop); any more could only be skipped, so they are dropped.
const queueLen = 64

// watchLog feeds matching lines to the trigger's own goroutine: the subscriber runs in
// the supervisor's output path and must never wait for a window to open.
func (s *Set) watchLog(t *trigger) (stop func()) {
	q := make(chan observation, queueLen)
	cancel := s.o.Lines(func(line string) {
		o, ok := t.c.observe(line)
		if !ok {
			return
		}
		o.at = s.o.Now()
		select {
		case q <- o:
		default:
			t.drop()
		}
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.ctx.Done():
				return
			case o := <-q:
				if t.handle(s.ctx, o, s.o.Open) {
					s.save()
				}
			}
		}
	}()
	return cancel
}

// observe reads one line: whether it matches, and its number when the trigger compares.
func (c *compiled) observe(line string) (observation, bool) {
	if c.match != nil {
		return observation{}, c.match.MatchString(line)
	}
	v, ok := c.logSrc.Value(line)
	return observation{value: v, has: true}, ok
}

func (s *Set) watchMetric(t *trigger) {
	src := &cost.MetricSource{URL: strings.TrimRight(s.o.ServerURL, "/") + "/metrics", Name: t.c.metric, Client: s.o.Client}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cost.Poll(s.ctx, src, s.o.ScrapeEvery, s.o.Now, func(at time.Time, v float64, err error) {
			t.setSourceError(err)
			if err == nil {
				if t.handle(s.ctx, observation{at: at, value: v, has: true}, s.o.Open) {
					s.save()
				}
			}
		})
	}()
}
