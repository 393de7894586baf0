package nsys

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a target running under an nsys front-end (`nsys launch` or `nsys profile`).
// nsys puts the target in its own process group; signals go to the front-end, which ends
// the target and the session. SIGKILL on the front-end would orphan both.
type Process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	unlocked bool // the caller already holds the launch lock
}

// ProcOptions configure how the front-end runs.
type ProcOptions struct {
	Dir    string
	Env    []string // full environment (nil = this process's plus LaunchEnv)
	Stdout io.Writer
	Stderr io.Writer
}

// StartProcess starts `nsys ARGS...` (from LaunchArgs) in its own process group.
func StartProcess(binary string, args []string, o ProcOptions) (*Process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Dir = o.Dir
	cmd.Env = o.Env
	if cmd.Env == nil {
		cmd.Env = append(os.Environ(), LaunchEnv()...)
	}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the nsys front-end's pid.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the front-end exits.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is valid after Done: the front-end's exit code (nsys passes the target's
// through), or -1 when it died by a signal.
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Err is cmd.Wait's error, after Done.
func (p *Process) Err() error { <-p.done; return p.err }

// Terminate sends SIGTERM to the front-end and waits up to grace for it to end the
// target and the session; only then does it kill the process group.
func (p *Process) Terminate(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// A session ending while another is being launched broke that launch (measured on
	// 2022.4), so teardown takes the launch lock too.
	if !p.unlocked {
		if unlock, err := lockFile(context.Background(), LockPath()); err == nil {
			defer unlock()
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("nsys (pid %d) did not end within %s of SIGTERM and was killed; its session or target may be orphaned", p.Pid(), grace)
}

// Launch starts `nsys ARGS...` and waits until ctl's session is armed (Launched,
// DelayedCollection or StartRange), holding the host-wide launch lock meanwhile. A
// front-end that dies before arming (the race above) is cleaned up and retried twice; the
// target had not started then. On timeout the front-end is ended and the error says what
// nsys printed.
func Launch(ctx context.Context, ctl *Controller, args []string, o ProcOptions, output func() string, timeout time.Duration) (*Process, error) {
	unlock, err := lockFile(ctx, LockPath())
	if err != nil {
		return nil, err
	}
	defer unlock()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		proc, retry, err := launchOnce(ctx, ctl, args, o, output, timeout)
		if err == nil {
			return proc, nil
		}
		lastErr = err
		if !retry {
			break
		}
		ctl.logf("nsys launch attempt %d failed, retrying: %v", attempt, err)
		ctl.cleanupSession()
		if err := sleepCtx(ctx, time.Duration(attempt)*500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, lastErr
}

func launchOnce(ctx context.Context, ctl *Controller, args []string, o ProcOptions, output func() string, timeout time.Duration) (*Process, bool, error) {
	proc, err := StartProcess(ctl.Runner.Binary(), args, o)
	if err != nil {
		return nil, false, err
	}
	proc.unlocked = true // Terminate must not wait for the lock we hold
	defer func() { proc.unlocked = false }()
	deadline := time.Now().Add(timeout)
	var last Session
	for {
		select {
		case <-proc.Done():
			// Exited before arming: the target never ran when the session shows no launch.
			retry := last.Launch == "" || last.Launch == "0"
			return nil, retry, fmt.Errorf("nsys exited (code %d) before session %q was armed; it printed: %s", proc.ExitCode(), ctl.Session, oneLine(output(), 600))
		default:
		}
		if list, err := ctl.Sessions(ctx); err == nil {
			if s, ok := Lookup(list, ctl.Session); ok {
				last = s
				switch s.State {
				case StateLaunched, StateDelayedCollection, StateStartRange:
					return proc, false, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = proc.Terminate(10 * time.Second)
			ctl.cleanupSession()
			return nil, false, fmt.Errorf("session %q was not armed within %s (state %q); nsys printed: %s", ctl.Session, timeout, last.State, oneLine(output(), 600))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanupSession removes what a failed launch left: the session row and its agent.
func (c *Controller) cleanupSession() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.Shutdown(ctx)
	_ = c.endSessionAgent()
}
