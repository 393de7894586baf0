package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// launched is the target the agent runs windows on.
type launched struct {
	sup          *Supervisor
	adopted      *TargetRecord // the previous agent's record, when adopted
	adoptCapture bool          // adopted while its session was capturing
}

// launchOrAdopt adopts a target a previous agent left running in this data dir (crashed
// or killed: its session, its open capture and its output carry on), or launches the
// configured command under nsys.
func launchOrAdopt(ctx context.Context, cfg Config, dataDir string, ctl *nsys.Controller, nsysPath string, info *nsys.Info) (*launched, error) {
	log := cfg.Log
	logPath := targetLogPath(dataDir)
	if rec, found := previousTarget(ctx, dataDir, ctl.Runner, log); found {
		if strings.Join(cfg.Command, " ") != strings.Join(rec.Command, " ") && cfg.ServerURLFile == "" {
			log.Warn("a previous agent's target is still running; adopting it instead of launching the given command (stop it first to launch anew)", "running", strings.Join(rec.Command, " "))
		}
		ctl.Session, ctl.Mode, ctl.FirstOutput = rec.Session, nsys.Mode(rec.Mode), rec.First
		sup, err := AttachTarget(ctl, rec.PID, rec.Group, rec.Command, logPath)
		if err != nil {
			return nil, err
		}
		st, _ := ctl.State(ctx)
		log.Info("attached to the running target of a previous agent", "session", rec.Session, "nsys_pid", rec.PID, "state", st)
		return &launched{sup: sup, adopted: rec, adoptCapture: st.Collecting()}, nil
	}

	first := filepath.Join(dataDir, "sessions", ctl.Session, "first")
	if err := os.MkdirAll(filepath.Dir(first), 0o700); err != nil {
		return nil, err
	}
	ctl.FirstOutput = first
	if cfg.ServerURLFile != "" {
		_ = os.Remove(cfg.ServerURLFile) // a stale address must not pass for the new server's
	}
	args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: ctl.Mode, Session: ctl.Session, Trace: cfg.Trace, Output: first,
		SampleCPU: cfg.SampleCPU, PassThrough: cfg.NsysArgs, Command: cfg.Command})
	if err != nil {
		return nil, configErrorf("%v", err)
	}
	if ctl.Mode == nsys.ModeCudaProfiler {
		log.Warn("cuda-profiler arming: the server opens and closes capture ranges itself (e.g. SGLang /start_profile with CUDA_PROFILER); the API's nsys windows are refused in this mode, and range reports are written next to " + first)
	}
	log.Info("launching target under nsys", "nsys", nsysPath, "version", info.Version, "mode", ctl.Mode, "session", ctl.Session, "command", strings.Join(cfg.Command, " "))
	sup, err := StartTarget(ctx, ctl, args, cfg.Command, logPath, append(TargetEnv(), cfg.Env...), 2*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("launching the target: %w (see %s)", err, logPath)
	}
	return &launched{sup: sup}, nil
}

// SecretEnv names the agent's own secrets in its environment. No child gets them: a
// .nsys-rep embeds the target's whole environment, and nsys commands need none of them.
var SecretEnv = []string{"NSYS_AGENT_TOKEN"}

// ChildEnv is the agent's environment without its secrets: what every nsys command runs
// with.
func ChildEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(SecretEnv, name)
	})
}

// TargetEnv is the target's environment: ChildEnv plus what nsys injection needs.
func TargetEnv() []string { return append(ChildEnv(), nsys.LaunchEnv()...) }

// previousTarget returns the target a previous agent recorded in this data dir when its
// nsys front-end and session are both still alive; a stale record is removed.
func previousTarget(ctx context.Context, dataDir string, runner nsys.Runner, log *slog.Logger) (*TargetRecord, bool) {
	rec, err := LoadTarget(dataDir)
	if err != nil {
		log.Warn("ignoring an unreadable target record", "err", err)
		return nil, false
	}
	if rec == nil {
		return nil, false
	}
	list, err := nsys.ListSessions(ctx, runner)
	if err == nil {
		if s, ok := nsys.Lookup(list, rec.Session); ok && s.State != nsys.StateShutdown && isFrontEnd(rec.PID, rec.Session) {
			return rec, true
		}
	}
	if rec.Group > 1 && procs.Alive(-rec.Group) {
		// Its nsys is gone but its server is not: end it, or this launch would start a
		// second server beside it, both holding GPUs.
		log.Warn("the previous agent's server outlived its nsys; ending it before launching anew", "pgid", rec.Group)
		if _, err := procs.Terminate(-rec.Group, 10*time.Second); err != nil {
			log.Warn("ending the previous server", "err", err)
		}
	}
	if n, err := endMarkedTarget(rec.Session, 10*time.Second); err != nil {
		log.Warn("ending the previous server", "err", err)
	} else if n > 0 {
		log.Warn("ended processes of the previous agent's server that outlived its nsys", "processes", n, "marker", nsys.TargetMarkerEnv+"="+rec.Session)
	}
	log.Info("the target recorded by a previous agent has ended; launching anew", "session", rec.Session)
	ClearTarget(dataDir)
	return nil, false
}

// isFrontEnd reports whether pid is still the nsys front-end of session (not a process
// that reused the pid).
func isFrontEnd(pid int, session string) bool {
	if pid <= 0 {
		return false
	}
	argv, err := procs.Default.Cmdline(pid)
	return err == nil && slices.Contains(argv, "--session-new="+session)
}
