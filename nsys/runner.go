package nsys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Call is one nsys invocation.
type Call struct {
	Args    []string      // arguments after the nsys binary
	Dir     string        // working directory ("" = inherit)
	Timeout time.Duration // 0 = the runner's default
}

// Result is what an nsys invocation printed and how it ended.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
	Duration time.Duration
}

// Output joins stdout and stderr for matching nsys messages, which move between the two.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// Runner runs nsys commands. The agent depends on this interface, never on exec.
type Runner interface {
	Run(ctx context.Context, c Call) (Result, error)
	// Binary is the nsys path every command of a session must use.
	Binary() string
}

// ExecRunner runs the real nsys binary. Every call runs under a timeout; a timed-out
// nsys is sent SIGTERM, then SIGKILL after a grace period.
type ExecRunner struct {
	Path    string
	Env     []string // full environment; nil = this process's (TMPDIR must match the launch)
	Default time.Duration
}

// NewExecRunner returns a runner for the nsys at path with a 60 s default timeout.
func NewExecRunner(path string) *ExecRunner {
	return &ExecRunner{Path: path, Default: 60 * time.Second}
}

func (r *ExecRunner) Binary() string { return r.Path }

// Run executes nsys. A non-zero exit is not an error here (nsys exit codes prove little);
// an error means nsys could not be run or timed out (wrapping ErrTimeout).
func (r *ExecRunner) Run(ctx context.Context, c Call) (Result, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = r.Default
	}
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = r.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM first: SIGKILL on an nsys front-end can orphan its session agent.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Duration: time.Since(start)}
	if ctx.Err() != nil {
		// Make sure nothing of the group survives.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return res, &TimeoutError{Args: c.Args, After: timeout.String()}
		}
		return res, ctx.Err()
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
			return res, nil
		}
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return res, &NotInstalledError{Looked: []string{r.Path}}
		}
		return res, fmt.Errorf("running nsys %v: %w", c.Args, err)
	}
	return res, nil
}
