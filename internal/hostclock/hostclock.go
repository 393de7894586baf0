// Package hostclock is the agent's wall clock, with one test hook: the environment
// variable NSYS_AGENT_TEST_CLOCK_SHIFT (a Go duration such as "-2.5s") shifts it, so that
// tests on one machine can run agents whose clocks disagree the way different hosts'
// clocks do (issue 14). The agent, its manifests, scheduled starts and the built-in demo
// target's traces all read this clock; CLOCK_MONOTONIC is never shifted.
package hostclock

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ShiftEnv names the test hook.
const ShiftEnv = "NSYS_AGENT_TEST_CLOCK_SHIFT"

var shift = sync.OnceValue(func() time.Duration {
	d, err := time.ParseDuration(os.Getenv(ShiftEnv))
	if err != nil {
		return 0
	}
	return d
})

// Shift is the test hook's shift (0 without it).
func Shift() time.Duration { return shift() }

// Now is the wall clock, shifted by the test hook.
func Now() time.Time { return time.Now().Add(shift()) }

// Mono reads CLOCK_MONOTONIC in nanoseconds (0 if it cannot be read).
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
