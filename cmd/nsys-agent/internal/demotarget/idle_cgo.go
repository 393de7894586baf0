//go:build cgo

package demotarget

/*
#include <unistd.h>

// demo_usleep exists so that the idle time between steps goes through libc: nsys's OS
// runtime tracing (--trace=osrt) wraps libc calls, and a pure-Go sleep is invisible to it.
static void demo_usleep(unsigned int us) { usleep(us); }
*/
import "C"

import "time"

// idleViaLibc reports whether idle time shows up in nsys's OS runtime trace.
const idleViaLibc = true

func idle(d time.Duration) {
	// POSIX allows usleep to refuse a second or more.
	for d > 0 {
		chunk := min(d, 500*time.Millisecond)
		C.demo_usleep(C.uint(chunk.Microseconds()))
		d -= chunk
	}
}
