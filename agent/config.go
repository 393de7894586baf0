package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// Config is everything `nsys-agent run` decides from its flags.
type Config struct {
	Listen      string // address of the HTTP API (default 127.0.0.1:7477)
	Token       string // bearer token clients must send ("" = none; loopback only)
	TokenFile   string // where Token was read from, if a file (its mode is checked)
	TLSCert     string // serve HTTPS with this certificate (PEM)
	TLSKey      string
	TLSClientCA string // require client certificates signed by this CA (mTLS)

	DataDir   string
	Nsys      string   // nsys binary ("" = find it)
	Arm       string   // start-later, launch or cuda-profiler ("" = the best this nsys has)
	Trace     []string // APIs nsys traces (nil = nsys.DefaultTrace)
	NsysArgs  []string // extra nsys options for the launch
	SampleCPU bool
	Session   string // nsys session name ("" = nsys-agent-<random>)

	Command []string // the server command
	Env     []string // NAME=value the server gets on top of the agent's environment
	// ServerURL is the server's own HTTP address; ServerURLFile, when set, is a file the
	// server writes its address into once it listens (the demo target does).
	ServerURL     string
	ServerURLFile string

	// PluginDir is where backend plugins (nsys-agent-backend-NAME) are found ("" = load
	// none; `nsys-agent run` defaults it to the folder of its own binary).
	PluginDir string
	// Backend is the default backend of windows (`run --backend NAME`); a plugin that
	// adjusts the server's launch (shared.Launcher) does so before it starts.
	Backend string
	// Cost says where each window's cost (the server's throughput before, during and
	// after it) is read from.
	Cost CostConfig
	// Triggers open windows by themselves (issue 15, triggers part; `run --trigger-*`).
	Triggers []triggers.Spec

	StopTimeout time.Duration // one nsys stop (default 5 min)
	MinFree     uint64        // free space the data dir needs for a window to start (0: none)
	ReadyFile   string        // write the API URL here once serving (for scripts)
	Version     string
	Log         *slog.Logger
	// Banner receives the lines that tell a person what to do next (nil: none).
	Banner io.Writer

	// Retention (issue 15, item 3): MaxBytes bounds the bytes of all window folders,
	// KeepWindows the finished, unpinned windows kept (0: no bound; the oldest go first);
	// MaxWindowBytes stops a capture that has written more (0: none).
	MaxBytes       int64
	KeepWindows    int
	MaxWindowBytes int64
}

// ErrConfig marks a configuration the agent refuses (a usage error: exit code 2).
var ErrConfig = errors.New("invalid configuration")

func configErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// check refuses unsafe or incomplete configurations before anything is launched.
func (c *Config) check() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7477"
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 5 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if len(c.Command) == 0 {
		return configErrorf("no server command")
	}
	loop, err := isLoopback(c.Listen)
	if err != nil {
		return configErrorf("--listen %q: %v (use HOST:PORT)", c.Listen, err)
	}
	if !loop && c.Token == "" && c.TLSClientCA == "" {
		return configErrorf("--listen %s is reachable from other machines: set a token (--token-file, --token or NSYS_AGENT_TOKEN) or --tls-client-ca; refusing to serve without authentication", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") || (c.TLSClientCA != "" && c.TLSCert == "") {
		return configErrorf("--tls-cert and --tls-key go together, and --tls-client-ca needs them")
	}
	return nil
}

// MinTokenLen is the shortest token accepted without a warning: 16 bytes of a random
// token are 128 bits, 16 characters of hex 64; shorter ones can be guessed.
const MinTokenLen = 16

// tokenWarnings says, as ssh does for keys, what makes the token easy to steal or guess.
func (c *Config) tokenWarnings() []string {
	var w []string
	if c.Token != "" && len(c.Token) < MinTokenLen {
		w = append(w, fmt.Sprintf("the token is %d bytes long; use at least %d random bytes (e.g. openssl rand -hex 32)", len(c.Token), MinTokenLen))
	}
	if c.TokenFile != "" {
		if fi, err := os.Stat(c.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			w = append(w, fmt.Sprintf("the token file %s is readable by other users (mode %04o); run chmod 600 %s", c.TokenFile, fi.Mode().Perm(), c.TokenFile))
		}
	}
	return w
}

// clockHookWarning is what the agent says at startup about the clock-shift test hook
// (issue 14, hostclock): "" when unset. A shifted agent records every time off by the
// shift and reads every start_at on that clock, which must never go unnoticed on a real
// host; a value that is no duration is ignored, and that is said too.
func clockHookWarning(value string, shift time.Duration, err error) string {
	switch {
	case err != nil:
		return "test hook ignored: " + err.Error()
	case value == "":
		return ""
	}
	return fmt.Sprintf("test hook: this agent's clock is shifted by %s (%s=%s): its manifests, events, GET /v1/clock and start_at are on that clock; unset it unless this is a test", shift, hostclock.ShiftEnv, value)
}

// isLoopback reports whether a listen address only accepts local connections.
func isLoopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}
