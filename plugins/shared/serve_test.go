package shared

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitOrphaned(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	getppid := func() int { return int(ppid.Load()) }

	done := make(chan bool, 1)
	go func() { done <- waitOrphaned(4242, time.Millisecond, getppid, nil) }()
	select {
	case <-done:
		t.Fatal("waitOrphaned returned while the parent lives")
	case <-time.After(50 * time.Millisecond):
	}
	ppid.Store(1) // re-parented to init
	select {
	case orphaned := <-done:
		if !orphaned {
			t.Error("waitOrphaned = false after the parent changed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitOrphaned missed the new parent")
	}

	stop := make(chan struct{})
	close(stop)
	if waitOrphaned(4242, time.Hour, func() int { return 4242 }, stop) {
		t.Error("waitOrphaned = true when stopped")
	}
}
