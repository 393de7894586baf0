package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/process"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// Supervisor runs the target under its nsys front-end, keeps its output in
// <data-dir>/target.log and a ring buffer, and notices its exit at once.
type Supervisor struct {
	Command []string // the server command (without nsys)
	proc    *nsys.Process
	log     *os.File
	ring    *lineRing
	started time.Time
}

// StartTarget starts `nsys ARGS...` with the target's output going to logPath, and
// returns once ctl's session is armed (see nsys.Launch).
func StartTarget(ctx context.Context, ctl *nsys.Controller, args, command []string, logPath string, env []string, armTimeout time.Duration) (*Supervisor, error) {
	nsysBinary := ctl.Runner.Binary()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening target log: %w", err)
	}
	ring := newLineRing(200)
	w := io.MultiWriter(f, ring)
	fmt.Fprintf(f, "\n--- nsys-agent %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), nsysBinary, strings.Join(args, " "))
	output := func() string { return strings.Join(ring.Tail(20), "\n") }
	proc, err := nsys.Launch(ctx, ctl, args, nsys.ProcOptions{Stdout: w, Stderr: w, Env: env}, output, armTimeout)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &Supervisor{Command: command, proc: proc, log: f, ring: ring, started: time.Now()}
	go func() {
		<-proc.Done()
		fmt.Fprintf(f, "--- nsys-agent: target exited with code %d\n", proc.ExitCode())
	}()
	return s, nil
}

// Done is closed when the target (its nsys front-end) has exited.
func (s *Supervisor) Done() <-chan struct{} { return s.proc.Done() }

// Exited reports whether the target ended, and its exit code.
func (s *Supervisor) Exited() (bool, int) {
	select {
	case <-s.proc.Done():
		return true, s.proc.ExitCode()
	default:
		return false, 0
	}
}

// PID is the nsys front-end's pid.
func (s *Supervisor) PID() int { return s.proc.Pid() }

// Tail returns the last n lines the target printed.
func (s *Supervisor) Tail(n int) []string { return s.ring.Tail(n) }

// Subscribe delivers each new output line to fn until cancel (log triggers, readiness).
func (s *Supervisor) Subscribe(fn func(line string)) (cancel func()) { return s.ring.Subscribe(fn) }

// Ranks lists the target's processes: descendants of the nsys front-end that are not
// nsys' own helpers (nsys-launcher, nsys-tee). Read from /proc through gopsutil.
func (s *Supervisor) Ranks() []int {
	procs, err := process.Processes()
	if err != nil {
		return nil
	}
	children := map[int32][]*process.Process{}
	for _, p := range procs {
		ppid, err := p.Ppid()
		if err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int32{int32(s.proc.Pid())}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			queue = append(queue, c.Pid)
			name, _ := c.Name()
			if !strings.HasPrefix(name, "nsys") {
				out = append(out, int(c.Pid))
			}
		}
	}
	return out
}

// Stop ends the target through nsys: SIGTERM to the front-end (never SIGKILL first, which
// would orphan the target and the session), then waits up to grace.
func (s *Supervisor) Stop(grace time.Duration) error {
	err := s.proc.Terminate(grace)
	<-s.proc.Done()
	s.log.Close()
	return err
}

// lineRing keeps the last lines of output and feeds subscribers line by line.
type lineRing struct {
	mu      sync.Mutex
	lines   []string
	max     int
	partial bytes.Buffer
	subs    map[int]func(string)
	nextSub int
}

func newLineRing(max int) *lineRing { return &lineRing{max: max, subs: map[int]func(string){}} }

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.partial.Write(p)
	var done []string
	for {
		b := r.partial.Bytes()
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(b[:i]), "\r")
		r.partial.Next(i + 1)
		done = append(done, line)
		r.lines = append(r.lines, line)
		if len(r.lines) > r.max {
			r.lines = r.lines[len(r.lines)-r.max:]
		}
	}
	subs := make([]func(string), 0, len(r.subs))
	for _, fn := range r.subs {
		subs = append(subs, fn)
	}
	r.mu.Unlock()
	for _, line := range done {
		for _, fn := range subs {
			fn(line)
		}
	}
	return len(p), nil
}

func (r *lineRing) Tail(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > len(r.lines) {
		n = len(r.lines)
	}
	return append([]string(nil), r.lines[len(r.lines)-n:]...)
}

func (r *lineRing) Subscribe(fn func(string)) func() {
	r.mu.Lock()
	id := r.nextSub
	r.nextSub++
	r.subs[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}
