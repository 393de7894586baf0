package nsys

// The session's state comes from `nsys sessions list` and nowhere else: nsys exit codes
// prove nothing (DESIGN.md), so every start and stop is judged by the state around it.

import (
	"context"
	"time"
)

// Sessions lists all nsys sessions on this host (other users' too) and refreshes the
// cached row of this controller's session.
func (c *Controller) Sessions(ctx context.Context) ([]Session, error) {
	list, err := ListSessions(ctx, c.Runner)
	if err == nil {
		s, ok := Lookup(list, c.Session)
		c.cacheMu.Lock()
		c.cached, c.cachedOK, c.cachedAt = s, ok, time.Now()
		c.cacheMu.Unlock()
	}
	return list, err
}

// Watch refreshes the cached session row every interval until ctx ends, so that Start
// can skip its own listing (MaxStateAge). One `nsys sessions list` costs ~10 ms of CPU.
func (c *Controller) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.Sessions(ctx)
		}
	}
}

// freshState returns the cached state when it is recent enough to act on.
func (c *Controller) freshState() (State, bool) {
	if c.MaxStateAge <= 0 {
		return "", false
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if !c.cachedOK || time.Since(c.cachedAt) > c.MaxStateAge {
		return "", false
	}
	return c.cached.State, true
}

// WatchedState is the session's state as the last listing saw it, and when; ok is false
// when no listing has seen the session yet. Reads that can live with a few seconds' age
// (the API's status) use it instead of running nsys: one `nsys sessions list` costs ~10 ms
// of CPU and 22 MB, which capped GET /v1/status near 80 req/s.
func (c *Controller) WatchedState() (st State, at time.Time, ok bool) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if !c.cachedOK && c.cachedAt.IsZero() {
		return "", time.Time{}, false
	}
	if !c.cachedOK {
		return StateShutdown, c.cachedAt, true // listed without our session: it is gone
	}
	return c.cached.State, c.cachedAt, true
}

// ListSessions runs and parses `nsys sessions list`.
func ListSessions(ctx context.Context, r Runner) ([]Session, error) {
	res, err := r.Run(ctx, Call{Args: []string{"sessions", "list"}, Timeout: 20 * time.Second})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return nil, &CommandError{Args: []string{"sessions", "list"}, ExitCode: res.ExitCode, Output: res.Output()}
	}
	return ParseSessions([]byte(res.Stdout))
}

// State returns the session's current state.
func (c *Controller) State(ctx context.Context) (State, error) {
	list, err := c.Sessions(ctx)
	if err != nil {
		return "", err
	}
	s, ok := Lookup(list, c.Session)
	if !ok {
		return "", &SessionNotFoundError{Name: c.Session, Known: Names(list)}
	}
	return s.State, nil
}

// waitSettled polls until the session leaves a transient state (Generation) or the
// deadline passes, and returns the last state seen.
func (c *Controller) waitSettled(ctx context.Context, within time.Duration) (State, error) {
	deadline := time.Now().Add(within)
	for {
		st, err := c.State(ctx)
		if err != nil || !st.Generating() || time.Now().After(deadline) {
			return st, err
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return st, err
		}
	}
}

func stateIn(s State, set []State) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
