// Package doctor answers "what would stop a capture on this host, and how do I fix it":
// nsys and its importer, the data dir's disk, TMPDIR, CPU-sampling permissions, the
// listen port, the GPU driver and CUPTI. Each check is a small function in one list
// (checks, below); one that cannot decide says so as a warning and never stops the
// others. It is its own package so its checks can be tested over fake /proc trees,
// captured ldd output and real fake nsys layouts, apart from the CLI that prints them.
package doctor

import (
	"context"
	"os"
	"strings"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// Status is how a check came out.
type Status string

const (
	// OK: nothing here stops a capture.
	OK Status = "ok"
	// Warn: captures work, but something is missing or risky (CPU sampling denied, a
	// disk that one large window would fill).
	Warn Status = "warn"
	// Fail: a capture would fail until this is fixed.
	Fail Status = "fail"
)

// Result is one check's outcome: a one-line finding and, unless OK, the fix.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Finding string `json:"finding"`
	Fix     string `json:"fix,omitempty"`
}

// Config is what the checks look at; the zero value of each field means "as
// `nsys-agent run` would have it".
type Config struct {
	// Nsys is an explicit nsys path (--nsys); "" finds it as the agent does.
	Nsys string
	// DataDir is the agent's --data-dir (default ./nsys-agent-data).
	DataDir string
	// MinFree is the free space a window needs to start (run --min-free).
	MinFree uint64
	// Listen is the agent's --listen address (default 127.0.0.1:7477).
	Listen string
	// ProcRoot is where /proc is mounted, DevRoot /dev; tests point them at fake trees.
	ProcRoot string
	DevRoot  string
	// Euid gives the effective user id the agent would run as (nil: this process's).
	Euid func() int
}

// Defaults of `nsys-agent run`, repeated here so the doctor looks where the agent would.
const (
	DefaultDataDir = "./nsys-agent-data"
	DefaultListen  = "127.0.0.1:7477"
)

// state carries what one check found to the checks after it (the nsys probe).
type state struct {
	cfg      Config
	path     string         // nsys found ("" if not)
	info     *nsys.Info     // probe result (nil if nsys did not run)
	sessions []nsys.Session // nsys sessions list (nil if it could not be read)
}

func (s *state) euid() int {
	if s.cfg.Euid == nil {
		return os.Geteuid()
	}
	return s.cfg.Euid()
}

// check is one entry of the registry: it returns its results (a check may report
// nothing when it does not apply, e.g. CUPTI without a GPU).
type check func(ctx context.Context, s *state) []Result

// checks is the one list, in the order they are printed.
var checks = []check{
	checkNsys,
	checkSessions,
	checkOrphans,
	checkImporter,
	checkDataDir,
	checkTmpdir,
	checkPerf,
	checkPort,
	checkGPU,
}

// Run runs every check and returns their results in order.
func Run(ctx context.Context, cfg Config) []Result {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.DevRoot == "" {
		cfg.DevRoot = "/dev"
	}
	s := &state{cfg: cfg}
	var out []Result
	for _, c := range checks {
		out = append(out, c(ctx, s)...)
	}
	return out
}

// Failed lists the checks that failed: a capture would fail while any is listed.
func Failed(results []Result) []string {
	var names []string
	for _, r := range results {
		if r.Status == Fail {
			names = append(names, r.Check)
		}
	}
	return names
}

// firstLine keeps the first line of a tool's message, cut to n bytes.
func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
