package pluginhost

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogger is the hclog.Logger go-plugin writes to: its own messages about the plugin
// process and every log line the plugin writes on stderr (hclog JSON, parsed by
// go-plugin, or plain text). Each lands in the agent's slog logger with the plugin's
// name, so `run --log-level debug` shows a plugin's logs beside the agent's.
type slogger struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
	// ending is set when the agent itself ends the plugin (shutdown, relaunch): go-plugin's
	// "plugin process exited" at INFO then says nothing worth a line at every shutdown,
	// and goes to DEBUG. Shared by every copy With and Named make.
	ending *atomic.Bool
}

var _ hclog.Logger = (*slogger)(nil)

// newLogger forwards to l, tagging every record with backend=name (go-plugin adds
// plugin=PATH to its own). go-plugin's
// "plugin process exited" and its debug chatter pass through at their own level.
func newLogger(l *slog.Logger, name string) *slogger {
	return &slogger{l: l.With("backend", name), level: hclog.Trace, ending: new(atomic.Bool)}
}

// exitedMsg is what go-plugin logs when the plugin's process ends (at INFO on a clean
// exit, at ERROR with the error otherwise; go-plugin v1.8.0 client.go).
const exitedMsg = "plugin process exited"

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (s *slogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Info && msg == exitedMsg && s.ending.Load() {
		level = hclog.Debug // the agent ended it: an expected exit
	}
	if level == hclog.Off || level < s.level {
		return
	}
	lv := slogLevel(level)
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	all := append(append([]any{}, s.args...), args...)
	if len(all)%2 == 1 {
		// hclog accepts an odd trailing value; slog would print it as !BADKEY.
		all = append(all[:len(all)-1], "extra", all[len(all)-1])
	}
	s.l.Log(ctx, lv, msg, all...)
}

func (s *slogger) Trace(msg string, args ...any) { s.Log(hclog.Trace, msg, args...) }
func (s *slogger) Debug(msg string, args ...any) { s.Log(hclog.Debug, msg, args...) }
func (s *slogger) Info(msg string, args ...any)  { s.Log(hclog.Info, msg, args...) }
func (s *slogger) Warn(msg string, args ...any)  { s.Log(hclog.Warn, msg, args...) }
func (s *slogger) Error(msg string, args ...any) { s.Log(hclog.Error, msg, args...) }

func (s *slogger) enabled(level hclog.Level) bool {
	return level >= s.level && s.l.Enabled(context.Background(), slogLevel(level))
}

func (s *slogger) IsTrace() bool { return s.enabled(hclog.Trace) }
func (s *slogger) IsDebug() bool { return s.enabled(hclog.Debug) }
func (s *slogger) IsInfo() bool  { return s.enabled(hclog.Info) }
func (s *slogger) IsWarn() bool  { return s.enabled(hclog.Warn) }
func (s *slogger) IsError() bool { return s.enabled(hclog.Error) }

func (s *slogger) ImpliedArgs() []any { return append([]any{}, s.args...) }

func (s *slogger) With(args ...any) hclog.Logger {
	c := *s
	c.args = append(append([]any{}, s.args...), args...)
	return &c
}

func (s *slogger) Name() string { return s.name }

// Named adds a name part (kept for Name; records carry backend=NAME instead). go-plugin
// names its stderr reader after the plugin's path: that part is kept short.
func (s *slogger) Named(name string) hclog.Logger {
	c := *s
	if i := strings.LastIndex(name, Prefix); i >= 0 {
		name = name[i+len(Prefix):]
	}
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (s *slogger) ResetNamed(name string) hclog.Logger {
	c := *s
	c.name = name
	return &c
}

func (s *slogger) SetLevel(level hclog.Level) { s.level = level }

// GetLevel is the lowest level the agent's logger would print: go-plugin skips parsing
// plugin lines below it.
func (s *slogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if s.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (s *slogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

func (s *slogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return writerFunc(func(p []byte) (int, error) {
		s.Log(level, strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
