package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// Supervisor runs the target under its nsys front-end, keeps its output in
// <data-dir>/target.log (the front-end writes to the file itself, so a crash of the agent
// loses no output and breaks no pipe under the server), follows that file into a ring
// buffer for status and log triggers, and notices the target's exit at once.
type Supervisor struct {
	Command  []string // the server command (without nsys)
	Attached bool     // adopted from a previous agent rather than launched by this one

	proc *nsys.Process    // nil when attached
	ctl  *nsys.Controller // the session, to end what outlives the front-end (nil: none)
	pid  int
	// serverGroup is the process group of the server itself: nsys-launcher starts it in a
	// session and group of its own (seen on 2022.4.2: pgid = sid = the server's pid), so
	// it outlives a front-end killed with SIGKILL (the OOM killer) and keeps its GPUs.
	serverGroup atomic.Int64
	// sweepErr says which of the server's processes outlived even SIGKILL when the
	// front-end was gone (set before done is closed).
	sweepErr error

	ranksMu  sync.Mutex
	ranks    []int
	ranksAt  time.Time
	done     chan struct{}
	code     int
	log      *os.File
	ring     *lineRing
	stopTail context.CancelFunc
	tailDone chan struct{}
}

// StartTarget starts `nsys ARGS...` with the target's output going to logPath, and
// returns once ctl's session is armed (see nsys.Launch).
func StartTarget(ctx context.Context, ctl *nsys.Controller, args, command []string, logPath string, env []string, armTimeout time.Duration) (*Supervisor, error) {
	nsysBinary := ctl.Runner.Binary()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening target log: %w", err)
	}
	fmt.Fprintf(f, "\n--- nsys-agent %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), nsysBinary, strings.Join(args, " "))
	offset, _ := f.Seek(0, io.SeekCurrent)
	s := newSupervisor(command, f, logPath, offset)
	output := func() string { return lastLines(logPath, offset, 20) }
	env = withTargetMarker(env, ctl.Session)
	proc, err := nsys.Launch(ctx, ctl, args, nsys.ProcOptions{Stdout: f, Stderr: f, Env: env}, output, armTimeout)
	if err != nil {
		s.stopFollowing()
		f.Close()
		return nil, err
	}
	s.proc, s.pid, s.ctl = proc, proc.Pid(), ctl
	s.findServerGroup()
	go func() {
		<-proc.Done()
		s.code = proc.ExitCode()
		fmt.Fprintf(f, "--- nsys-agent: target exited with code %d\n", s.code)
		s.endOrphans()
		s.stopFollowing()
		close(s.done)
	}()
	return s, nil
}

// findServerGroup records the server's process group: the nearest process under the
// front-end that is not one of nsys' own helpers.
func (s *Supervisor) findServerGroup() {
	desc, err := procs.Default.Descendants(s.pid)
	if err != nil {
		return
	}
	for _, p := range desc {
		if strings.HasPrefix(p.Comm, "nsys") {
			continue
		}
		if pgid, err := syscall.Getpgid(p.PID); err == nil && pgid > 1 {
			s.serverGroup.Store(int64(pgid))
		}
		return
	}
}

// ServerGroup is the server's process group (0 when unknown). It is looked up again while
// unknown: the server may not have been forked yet when the session armed.
func (s *Supervisor) ServerGroup() int {
	if s.serverGroup.Load() == 0 && !s.Attached {
		s.findServerGroup()
	}
	return int(s.serverGroup.Load())
}

// endOrphans ends what outlived the nsys front-end: the server's process group, any
// other process carrying the target's marker (nsys.TargetMarkerEnv: a worker that left the
// group) and the session (SIGKILL on the front-end, e.g. by the OOM killer, orphans them;
// 3/3 in a review, the server running on with its GPUs and the next `run` starting a
// second one). A server the agent no longer controls through nsys must not run on.
func (s *Supervisor) endOrphans() {
	pgid := s.ServerGroup()
	serverLeft := pgid > 1 && procs.Alive(-pgid)
	session := ""
	if s.ctl != nil {
		session = s.ctl.Session
	}
	marked := markedLeft(session, 2*time.Second)
	sessionLeft := false
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if s.ctl != nil {
		if st, err := s.ctl.State(ctx); err == nil && st != nsys.StateShutdown {
			sessionLeft = true
		}
	}
	if !serverLeft && !sessionLeft && marked == 0 {
		return
	}
	fmt.Fprintf(s.log, "--- nsys-agent: the nsys front-end is gone but the server (process group %d, running: %v; %d processes marked %s=%s) or its session (listed: %v) is not; ending them, so no server runs that the agent cannot control\n", pgid, serverLeft, marked, nsys.TargetMarkerEnv, session, sessionLeft)
	if s.ctl != nil {
		s.ctl.Kill(ctx)
	}
	if pgid > 1 && procs.Alive(-pgid) {
		if killed, err := procs.Terminate(-pgid, 10*time.Second); err != nil {
			fmt.Fprintf(s.log, "--- nsys-agent: %v\n", err)
		} else if killed {
			fmt.Fprintf(s.log, "--- nsys-agent: the server (process group %d) ignored SIGTERM for 10s and was killed\n", pgid)
		}
	}
	// What the group did not hold: workers in a session of their own, or the whole tree
	// when the group was never found.
	if n, err := endMarkedTarget(session, 10*time.Second); err != nil {
		s.sweepErr = err
		fmt.Fprintf(s.log, "--- nsys-agent: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(s.log, "--- nsys-agent: ended %d more of the server's processes (outside its process group)\n", n)
	}
}

// AttachTarget adopts a target that a previous agent launched (its nsys front-end is
// pid) and that is still running. Its exit is noticed by polling; its exit code is
// unknown (-1). Output keeps going to logPath, followed from its current end.
func AttachTarget(ctl *nsys.Controller, pid, serverGroup int, command []string, logPath string) (*Supervisor, error) {
	if syscall.Kill(pid, 0) != nil {
		return nil, fmt.Errorf("the target's nsys process %d is not running", pid)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening target log: %w", err)
	}
	fmt.Fprintf(f, "--- nsys-agent %s: attached to the running target (nsys pid %d)\n", time.Now().UTC().Format(time.RFC3339), pid)
	offset, _ := f.Seek(0, io.SeekCurrent)
	s := newSupervisor(command, f, logPath, offset)
	s.Attached, s.pid, s.code, s.ctl = true, pid, -1, ctl
	s.serverGroup.Store(int64(serverGroup))
	go func() {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(250 * time.Millisecond)
		}
		fmt.Fprintf(f, "--- nsys-agent: attached target (nsys pid %d) ended\n", pid)
		s.endOrphans()
		s.stopFollowing()
		close(s.done)
	}()
	return s, nil
}

func newSupervisor(command []string, f *os.File, logPath string, offset int64) *Supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{Command: command, done: make(chan struct{}), log: f, ring: newLineRing(200), stopTail: cancel, tailDone: make(chan struct{})}
	go s.follow(ctx, logPath, offset)
	go s.watchRanks(ctx, 2*time.Second)
	return s
}

// follow feeds new lines of the log file into the ring buffer until stopped, then reads
// what is left.
func (s *Supervisor) follow(ctx context.Context, path string, offset int64) {
	defer close(s.tailDone)
	r, err := os.Open(path)
	if err != nil {
		return
	}
	defer r.Close()
	if _, err := r.Seek(offset, io.SeekStart); err != nil {
		return
	}
	buf := make([]byte, 64*1024)
	for {
		for {
			n, err := r.Read(buf)
			if n > 0 {
				_, _ = s.ring.Write(buf[:n])
			}
			if err != nil || n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			for { // the rest, then stop
				n, _ := r.Read(buf)
				if n <= 0 {
					return
				}
				_, _ = s.ring.Write(buf[:n])
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Supervisor) stopFollowing() {
	s.stopTail()
	<-s.tailDone
}

// lastLines returns the last n lines written to path after offset (for launch errors,
// before the follower may have caught up).
func lastLines(path string, offset int64, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil || int64(len(raw)) < offset {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(raw[offset:]), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Done is closed when the target (its nsys front-end) has exited.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Exited reports whether the target ended, and its exit code (-1 when unknown).
func (s *Supervisor) Exited() (bool, int) {
	select {
	case <-s.done:
		return true, s.code
	default:
		return false, 0
	}
}

// PID is the nsys front-end's pid.
func (s *Supervisor) PID() int { return s.pid }

// Tail returns the last n lines the target printed.
func (s *Supervisor) Tail(n int) []string { return s.ring.Tail(n) }

// Subscribe delivers each new output line to fn until cancel (log triggers, readiness).
func (s *Supervisor) Subscribe(fn func(line string)) (cancel func()) { return s.ring.Subscribe(fn) }

// Ranks lists the target's processes: descendants of the nsys front-end that are not
// nsys' own helpers (nsys-launcher, nsys-tee), read from /proc (nsys/procs).
func (s *Supervisor) Ranks() []int {
	s.ranksMu.Lock()
	defer s.ranksMu.Unlock()
	if s.ranksAt.IsZero() {
		s.ranks, s.ranksAt = s.walkRanks(), time.Now()
	}
	return slices.Clone(s.ranks)
}

// watchRanks walks /proc for the ranks every interval until the target ends. A walk reads
// every /proc entry (milliseconds on a busy host): done in the request path, it was the
// p99 of GET /v1/status under load. Ranks are forked at start, so a few seconds' age is
// fine.
func (s *Supervisor) watchRanks(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-ctx.Done(): // stopped following: the target ended or never started
			return
		case <-t.C:
			ranks := s.walkRanks()
			s.ranksMu.Lock()
			s.ranks, s.ranksAt = ranks, time.Now()
			s.ranksMu.Unlock()
		}
	}
}

func (s *Supervisor) walkRanks() []int {
	desc, err := procs.Default.Descendants(s.pid)
	if err != nil {
		return nil
	}
	var out []int
	for _, p := range desc {
		if !strings.HasPrefix(p.Comm, "nsys") {
			out = append(out, p.PID)
		}
	}
	return out
}

// Stop ends the target through nsys: SIGTERM to the front-end (never SIGKILL first, which
// would orphan the target and the session), then waits up to grace.
func (s *Supervisor) Stop(grace time.Duration) error {
	var err error
	if s.proc != nil {
		err = s.proc.Terminate(grace)
	} else {
		_ = syscall.Kill(s.pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(grace):
			err = fmt.Errorf("the attached target (nsys pid %d) did not end within %s of SIGTERM", s.pid, grace)
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
		}
	}
	<-s.done
	s.log.Close()
	return errors.Join(err, s.sweepErr)
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
