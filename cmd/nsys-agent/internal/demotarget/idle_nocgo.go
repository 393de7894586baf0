//go:build !cgo

package demotarget

import "time"

// idleViaLibc reports whether idle time shows up in nsys's OS runtime trace; without cgo a
// Go sleep never enters libc, so an nsys report shows no CPU activity for the workers.
const idleViaLibc = false

func idle(d time.Duration) { time.Sleep(d) }
