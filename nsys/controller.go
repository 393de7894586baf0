// Package nsys drives the Nsight Systems CLI for nsys-agent: it finds an nsys binary and
// probes what it can do (probe.go, reading its --help in help.go), builds its command
// lines (args.go), launches a target under it (launch.go, one launch at a time on the
// host: lock.go), reads `nsys sessions list` (sessions.go), and opens and closes capture
// windows on a session through a Controller, split by job:
//
//	controller.go  the Controller and the types its callers pass around
//	state.go       what state the session is in: listing, the cached row, waiting it out
//	protocol.go    start and stop, each checked against the session list before and after
//	collect.go     finding the report a stop wrote, wherever nsys put it
//	processes.go   the session's processes (its agent, its target) and ending them;
//	               /proc is read through the subpackage procs
//	import.go      QdstrmImporter and `nsys export`
package nsys

import (
	"sync"
	"time"
)

// Controller opens and closes capture windows on one named nsys session. Exit code 0
// from nsys proves nothing: every start and stop is checked against `nsys sessions
// list` before and after, and every stop against the files on disk.
type Controller struct {
	Runner  Runner
	Info    *Info
	Session string
	Mode    Mode
	// FirstOutput is the launch's --output (start-later, cuda-profiler), without extension.
	FirstOutput string
	SampleCPU   bool

	// Timeouts; zero values get the defaults below.
	StartTimeout  time.Duration // one `nsys start` (default 30 s)
	StopTimeout   time.Duration // one `nsys stop`, report generation included (default 5 min)
	ImportTimeout time.Duration // QdstrmImporter / export (default 10 min)
	RetryFor      time.Duration // how long to retry "wrong state" answers (default 20 s)

	// MaxStateAge lets Start trust a `sessions list` row this recent (kept fresh by
	// Watch) instead of listing again; 0 always lists. The check after `nsys start` is
	// never skipped, and it removes a stray session if the cached row was wrong.
	MaxStateAge time.Duration

	// Log receives one line per nsys command, when set.
	Log func(format string, args ...any)

	cacheMu  sync.Mutex
	cached   Session
	cachedOK bool
	cachedAt time.Time
}

// Window is where one capture's report goes.
type Window struct {
	Dir  string // absolute folder the report ends up in
	Name string // report base name without extension (default "report")
}

// StopResult says what a stop produced.
type StopResult struct {
	Report   string   // the .nsys-rep in the window folder ("" if none)
	Qdstrm   string   // the raw .qdstrm, when it was kept (import failed or not attempted)
	Files    []string // every file moved into the window folder
	Imported bool     // we ran QdstrmImporter ourselves
	Warnings []string
	Duration time.Duration
}

func (c *Controller) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

func (c *Controller) timeout(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// StopDeadline is how long one `nsys stop` may take before it counts as hung.
func (c *Controller) StopDeadline() time.Duration { return c.timeout(c.StopTimeout, 5*time.Minute) }
