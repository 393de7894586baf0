// Package fleet is the client side of group windows (issue 14): it opens the same window
// on many agents at one instant and says how well that went. It measures each agent's
// clock against the coordinator's (NTP-style, from request round trips), schedules every
// member's window for one start time written in that member's own clock, waits until
// every member confirmed its capture, and otherwise stops every member so that no agent
// is left capturing for a group that failed. It speaks to agents only through Member, so
// it knows neither HTTP nor the CLI.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Member is one agent of a group, as the coordinator reaches it. Every call must honour
// ctx: the coordinator bounds each with Options.CallTimeout. A window reference (id) may
// be a window id or the group's id: an agent resolves a group id to its window of that
// group.
type Member interface {
	// Agent names the agent in records and errors: the URL the coordinator used.
	Agent() string
	Clock(ctx context.Context) (windows.ClockReading, error)
	Create(ctx context.Context, req windows.CreateRequest) (*windows.Manifest, error)
	Window(ctx context.Context, id string) (*windows.Manifest, error)
	Stop(ctx context.Context, id string) (*windows.Manifest, error)
	SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error)
}

// Options tune a Coordinator; zero values take the defaults below.
type Options struct {
	// Concurrency bounds how many agents are talked to at once, so that a group of
	// 1 000 agents does not open 1 000 connections at one instant (default 64).
	Concurrency int
	// Probes is how many clock readings are taken per agent; the one with the shortest
	// round trip wins (default 8). ProbeGap spaces them (default 2 ms), so that one
	// burst of scheduling noise does not spoil them all.
	Probes   int
	ProbeGap time.Duration
	// CallTimeout bounds each call to one agent (default 10 s).
	CallTimeout time.Duration
	// AckTimeout is how long after the start time every member has to confirm its
	// capture (default 30 s): an nsys start takes a few seconds on a loaded host.
	AckTimeout time.Duration
	// MinLead is the shortest time between now and a start time the coordinator picks
	// itself (default 1 s); PollEvery how often a member's window is asked for while the
	// coordinator waits for its confirmation (default 100 ms).
	MinLead   time.Duration
	PollEvery time.Duration
	// Coordinator names this host in the records (default: os.Hostname).
	Coordinator string
	// Now is the coordinator's clock (default time.Now). It must carry a monotonic
	// reading: round trips are measured with it.
	Now func() time.Time
}

// Defaults.
const (
	DefaultConcurrency = 64
	DefaultProbes      = 8
	DefaultProbeGap    = 2 * time.Millisecond
	DefaultCallTimeout = 10 * time.Second
	DefaultAckTimeout  = 30 * time.Second
	DefaultMinLead     = time.Second
	DefaultPollEvery   = 100 * time.Millisecond
)

// Coordinator opens group windows.
type Coordinator struct {
	o Options
}

// New returns a Coordinator with o's zero values set to the defaults.
func New(o Options) *Coordinator {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Probes <= 0 {
		o.Probes = DefaultProbes
	}
	if o.ProbeGap <= 0 {
		o.ProbeGap = DefaultProbeGap
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.MinLead <= 0 {
		o.MinLead = DefaultMinLead
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.Coordinator == "" {
		o.Coordinator, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Coordinator{o: o}
}

// ErrInvalid marks a group start that was refused before any agent was asked anything:
// the message says which input is wrong.
var ErrInvalid = errors.New("invalid group start")

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// NewGroupID makes a group id from the time (UTC) and 16 random bits:
// g-20250102-150405-ab12.
func NewGroupID(now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux; zeros would still be valid
	return "g-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// HostDir is the folder name of an agent in a pulled group: its URL's host and port with
// the colons made '_' and an IPv6 address's brackets dropped (http://gpu-1:7477 ->
// gpu-1_7477, http://[::1]:7477 -> __1_7477).
func HostDir(agentURL string) string {
	u, err := url.Parse(agentURL)
	if err != nil || u.Host == "" {
		return "agent"
	}
	return strings.NewReplacer(":", "_", "[", "", "]", "").Replace(u.Host)
}

// each runs fn(i) for i in [0, n), at most Concurrency at a time, and returns when all
// have returned.
func (c *Coordinator) each(n int, fn func(i int)) {
	sem := make(chan struct{}, c.o.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// call bounds one call to one agent by CallTimeout.
func call[T any](c *Coordinator, ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	return fn(ctx)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
