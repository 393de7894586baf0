package windows

import (
	"context"
	"sync"
	"sync/atomic"
)

// captureSlot is the one capture a target can have at a time: a window holds it from
// its backend's Start until its backend's Stop returned (the session is free again), so
// a start right after a stop waits for that stop's nsys work. It is a semaphore, not a
// mutex: the window's start acquires it, the window's stop (another goroutine) releases
// it through the lease, and a start queued behind a long stop gives up when its caller
// does.
type captureSlot struct {
	ch     chan struct{}
	holder atomic.Pointer[string] // the window holding it, for "busy with what" answers
}

func newCaptureSlot() *captureSlot { return &captureSlot{ch: make(chan struct{}, 1)} }

// lease is one holding of the slot; release is idempotent.
type lease struct {
	once sync.Once
	slot *captureSlot
}

// acquire waits for the slot until ctx ends; owner names the window taking it.
func (s *captureSlot) acquire(ctx context.Context, owner string) (*lease, error) {
	select {
	case s.ch <- struct{}{}:
		s.holder.Store(&owner)
		return &lease{slot: s}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tryAcquire takes the slot if it is free.
func (s *captureSlot) tryAcquire(owner string) (*lease, bool) {
	select {
	case s.ch <- struct{}{}:
		s.holder.Store(&owner)
		return &lease{slot: s}, true
	default:
		return nil, false
	}
}

// owner is the window holding the slot ("" when free).
func (s *captureSlot) owner() string {
	if p := s.holder.Load(); p != nil {
		return *p
	}
	return ""
}

func (l *lease) release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		l.slot.holder.Store(nil)
		<-l.slot.ch
	})
}
