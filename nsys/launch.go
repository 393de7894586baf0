package nsys

import (
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
	cmd  *exec.Cmd
	done chan struct{}
	err  error
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
