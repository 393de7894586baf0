package windows

import (
	"context"
	"sync"
)

// captureSlot is the one capture a target can have at a time: a window holds it from
// its backend's Start until its backend's Stop returned (the session is free again), so
// a start right after a stop waits for that stop's nsys work. It is a semaphore, not a
// mutex: the window's start acquires it, the window's stop (another goroutine) releases
// it through the lease, and a start queued behind a long stop gives up when its caller
// does.
type captureSlot chan struct{}

func newCaptureSlot() captureSlot { return make(captureSlot, 1) }

// lease is one holding of the slot; release is idempotent.
type lease struct {
	once sync.Once
	slot captureSlot
}

// acquire waits for the slot until ctx ends.
func (s captureSlot) acquire(ctx context.Context) (*lease, error) {
	select {
	case s <- struct{}{}:
		return &lease{slot: s}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tryAcquire takes the slot if it is free.
func (s captureSlot) tryAcquire() (*lease, bool) {
	select {
	case s <- struct{}{}:
		return &lease{slot: s}, true
	default:
		return nil, false
	}
}

func (l *lease) release() {
	if l == nil {
		return
	}
	l.once.Do(func() { <-l.slot })
}
