package nsys

// Opening and closing windows. nsys answers a request in the wrong state with exit 0 or
// with one of a few messages; both are turned into typed errors here, and "wrong state,
// retry" answers are retried while the previous step finishes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// What nsys says when a request comes in the wrong state (both 2022.4 and 2025.3.1).
const (
	// `nsys start` while the previous window is still collecting or generating: retry.
	msgConfigNotAllowed = "Configuring is not allowed in this state"
	// `nsys stop` with nothing collecting ("...: StopRequest.").
	msgNotApplicable = "The request is not applicable in this state"
	// Any session command when no session exists at all.
	msgNoSessions = "There are no active sessions"
)

// Start opens a window. The session must be listed and armable (Launched or
// DelayedCollection); otherwise nothing is run, because `nsys start` on an unknown name
// silently creates a new empty session.
func (c *Controller) Start(ctx context.Context, w Window) error {
	if c.Mode == ModeCudaProfiler {
		return fmt.Errorf("session %q is armed for cudaProfilerApi ranges: the target opens windows itself (e.g. SGLang /start_profile with CUDA_PROFILER)", c.Session)
	}
	if !filepath.IsAbs(w.Dir) {
		return fmt.Errorf("window folder must be absolute, got %q", w.Dir)
	}
	if w.Name == "" {
		w.Name = "report"
	}
	if err := os.MkdirAll(w.Dir, 0o700); err != nil {
		return fmt.Errorf("creating window folder: %w", err)
	}
	armable := []State{StateLaunched, StateDelayedCollection}
	st, fresh := c.freshState()
	if !fresh || !stateIn(st, armable) {
		var err error
		if st, err = c.waitSettled(ctx, c.timeout(c.RetryFor, 20*time.Second)); err != nil {
			return err
		}
	}
	if !stateIn(st, armable) {
		return &WrongStateError{Session: c.Session, Op: "start a window on", State: st, Want: armable}
	}
	args := StartArgs(c.Info.Caps, c.Mode, c.Session, filepath.Join(w.Dir, w.Name), c.SampleCPU)
	dir := ""
	if c.Mode == ModeStartLater {
		// Later windows go to reportN.nsys-rep in the caller's working directory.
		dir = w.Dir
	}
	res, err := c.retrying(ctx, Call{Args: args, Dir: dir, Timeout: c.timeout(c.StartTimeout, 30*time.Second)}, msgConfigNotAllowed)
	if err != nil {
		return err
	}
	list, err := c.Sessions(ctx)
	if err != nil {
		return err
	}
	row, ok := Lookup(list, c.Session)
	if !ok {
		return &SessionNotFoundError{Name: c.Session, Known: Names(list)}
	}
	after := row.State
	if after == StateStarted && row.Launch == "0" {
		// nsys made a new, empty session under our name: ours was gone. Remove it.
		_ = c.Shutdown(ctx)
		return &SessionNotFoundError{Name: c.Session}
	}
	if !after.Collecting() {
		detail := strings.TrimSpace(res.Output())
		return &WrongStateError{Session: c.Session, Op: "confirm the window started on", State: after, Want: []State{StateCollection}, Detail: detail}
	}
	return nil
}

// retrying runs a call and repeats it while nsys answers with a "wrong state, retry"
// message, for up to RetryFor.
func (c *Controller) retrying(ctx context.Context, call Call, retryMsg string) (Result, error) {
	deadline := time.Now().Add(c.timeout(c.RetryFor, 20*time.Second))
	delay := 100 * time.Millisecond
	for {
		res, err := c.Runner.Run(ctx, call)
		c.logf("nsys %s -> exit %d in %s", strings.Join(call.Args, " "), res.ExitCode, res.Duration.Round(time.Millisecond))
		if err != nil {
			return res, err
		}
		out := res.Output()
		if res.ExitCode == 0 && !strings.Contains(out, retryMsg) {
			return res, nil
		}
		if !strings.Contains(out, retryMsg) || time.Now().After(deadline) {
			if strings.Contains(out, msgNoSessions) {
				return res, &SessionNotFoundError{Name: c.Session}
			}
			if strings.Contains(out, retryMsg) || strings.Contains(out, msgNotApplicable) {
				st, _ := c.State(ctx)
				return res, &WrongStateError{Session: c.Session, Op: call.Args[0], State: st, Detail: oneLine(out, 200)}
			}
			return res, &CommandError{Args: call.Args, ExitCode: res.ExitCode, Output: out}
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return res, err
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

// Stop closes the open window and brings its report into w.Dir, importing a .qdstrm
// when nsys could not. On a hung stop it shuts the session's agent down and returns a
// *TimeoutError listing what was recovered.
func (c *Controller) Stop(ctx context.Context, w Window) (*StopResult, error) {
	begin := time.Now()
	if w.Name == "" {
		w.Name = "report"
	}
	st, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	if !st.Collecting() {
		return nil, &WrongStateError{Session: c.Session, Op: "stop", State: st, Want: []State{StateCollection}}
	}
	before := snapshot(w.Dir)
	args := []string{"stop", "--session=" + c.Session}
	call := Call{Args: args, Dir: w.Dir, Timeout: c.timeout(c.StopTimeout, 5*time.Minute)}
	res, err := c.Runner.Run(ctx, call)
	c.logf("nsys %s -> exit %d in %s", strings.Join(args, " "), res.ExitCode, res.Duration.Round(time.Millisecond))
	var te *TimeoutError
	if errors.As(err, &te) {
		return c.recoverHungStop(ctx, w, before, te)
	}
	if err != nil {
		return nil, err
	}
	out := res.Output()
	if res.ExitCode != 0 {
		if strings.Contains(out, msgNotApplicable) || strings.Contains(out, msgNoSessions) {
			st, _ := c.State(ctx)
			return nil, &WrongStateError{Session: c.Session, Op: "stop", State: st, Want: []State{StateCollection}, Detail: oneLine(out, 200)}
		}
		return nil, &CommandError{Args: args, ExitCode: res.ExitCode, Output: out}
	}
	result, err := c.collect(ctx, w, out, before)
	if err != nil {
		return nil, err
	}
	if after, err := c.waitSettled(ctx, 30*time.Second); err == nil && after.Collecting() {
		result.Warnings = append(result.Warnings, fmt.Sprintf("session %q still reports %s after stop", c.Session, after))
	}
	result.Duration = time.Since(begin)
	return result, nil
}

// recoverHungStop handles `nsys stop` that never returned (seen on 2022.4 with the state
// stuck in Generation): shut the session down without killing the target, end its
// session agent, and keep whatever raw stream it left.
func (c *Controller) recoverHungStop(ctx context.Context, w Window, before map[string]bool, te *TimeoutError) (*StopResult, error) {
	var cleanup []string
	if err := c.Shutdown(ctx); err != nil {
		cleanup = append(cleanup, "nsys shutdown --kill=none failed: "+err.Error())
	} else {
		cleanup = append(cleanup, "ran nsys shutdown --kill=none")
	}
	cleanup = append(cleanup, c.endSessionAgent()...)
	te.Cleanup = strings.Join(cleanup, "; ")
	return c.keepLeftovers(ctx, w, before, te)
}

// Shutdown ends the session's collection without killing the target (nsys shutdown
// discards an open window: stop first).
func (c *Controller) Shutdown(ctx context.Context) error {
	res, err := c.Runner.Run(ctx, Call{Args: []string{"shutdown", "--session=" + c.Session, "--kill=none"}, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return &CommandError{Args: []string{"shutdown", "--session=" + c.Session}, ExitCode: res.ExitCode, Output: res.Output()}
	}
	return nil
}

// Salvage collects what a capture left when its target died mid-window (the front-end
// writes the raw stream as the target exits, and on Debian's packaging nothing imports
// it): every report or stream in the window folder, imported when only a .qdstrm is there.
func (c *Controller) Salvage(ctx context.Context, w Window) (*StopResult, error) {
	if w.Name == "" {
		w.Name = "report"
	}
	return c.collect(ctx, w, "", map[string]bool{})
}
