// Package hostclock is the agent's wall clock, with one test hook: the environment
// variable NSYS_AGENT_TEST_CLOCK_SHIFT (a Go duration such as "-2.5s") shifts it, so that
// tests on one machine can run agents whose clocks disagree the way different hosts'
// clocks do (issue 14). The agent, its manifests, scheduled starts and the built-in demo
// target's traces all read this clock; CLOCK_MONOTONIC is never shifted.
package hostclock

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ShiftEnv names the test hook.
const ShiftEnv = "NSYS_AGENT_TEST_CLOCK_SHIFT"

// hook is the test hook as read once from the environment: a process's clock never
// changes its shift while it runs.
type hook struct {
	value string // as set, "" when unset
	shift time.Duration
	err   error // value is not a duration: the clock is not shifted
}

var read = sync.OnceValue(func() hook {
	v := os.Getenv(ShiftEnv)
	d, err := ParseShift(v)
	return hook{value: v, shift: d, err: err}
})

// ParseShift reads a value of the hook: "" is no shift, anything else must be a Go
// duration; the error names the variable and says the clock is then not shifted.
func ParseShift(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a Go duration (like -2.5s or 1h); the clock is not shifted: %w", ShiftEnv, v, err)
	}
	return d, nil
}

// Shift is the test hook's shift (0 without it).
func Shift() time.Duration { return read().shift }

// Hook reports the test hook as this process read it: its value ("" when unset) and,
// when that value is no duration, why it is ignored. The agent logs both at startup, so
// a shifted clock is never on unnoticed.
func Hook() (value string, err error) {
	h := read()
	return h.value, h.err
}

// Now is the wall clock, shifted by the test hook. It keeps time.Now's monotonic
// reading, so differences of two readings are the elapsed time whatever the shift.
func Now() time.Time { return time.Now().Add(read().shift) }

// Mono reads CLOCK_MONOTONIC in nanoseconds (0 if it cannot be read).
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
