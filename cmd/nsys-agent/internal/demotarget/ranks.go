package demotarget

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// rankProc is one worker process seen from the server: a separate process of the same
// binary, so that a profiler sees one process per rank as with a real TP server.
type rankProc struct {
	rank    int
	pid     int
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan reply
	readErr chan error    // the reader's end: EOF or a broken line
	exited  chan struct{} // closed after Wait returned
	waitErr error
	quit    chan struct{} // closed by stop, releases the reader
}

// startRank starts the worker of one rank and waits for its answer to init.
func startRank(ctx context.Context, o *Options, init initArgs) (*rankProc, error) {
	argv := append(append([]string{}, o.WorkerCommand...), "--rank", strconv.Itoa(init.Rank))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = o.Stderr
	cmd.SysProcAttr = workerSysProcAttr()
	// Our own pipes rather than StdinPipe/StdoutPipe: Wait must not close the read end under
	// the reader goroutine.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start rank %d worker %q: %w", init.Rank, argv[0], err)
	}
	p := &rankProc{
		rank: init.Rank, pid: cmd.Process.Pid, cmd: cmd, in: inW,
		replies: make(chan reply), readErr: make(chan error, 1),
		exited: make(chan struct{}), quit: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	go p.read(outR)

	initCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := p.call(initCtx, command{Op: opInit, Init: &init})
	if err == nil && r.PID != p.pid {
		err = fmt.Errorf("rank %d worker reported pid %d, started as %d", init.Rank, r.PID, p.pid)
	}
	if err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return p, nil
}

func (p *rankProc) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rep reply
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			p.readErr <- fmt.Errorf("rank %d: bad reply %q: %w", p.rank, sc.Text(), err)
			return
		}
		select {
		case p.replies <- rep:
		case <-p.quit:
			return
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	p.readErr <- err
}

// call sends one command and waits for its reply. A worker that died is reported with its
// exit status.
func (p *rankProc) call(ctx context.Context, c command) (reply, error) {
	if err := p.send(c); err != nil {
		return reply{}, err
	}
	return p.receive(ctx)
}

func (p *rankProc) send(c command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return p.died(err)
	}
	return nil
}

// receive waits for the next reply. A reply that reports a failure comes back with an error
// and its Op set; a dead worker comes back with an error and an empty reply.
func (p *rankProc) receive(ctx context.Context) (reply, error) {
	select {
	case r := <-p.replies:
		if r.Err != "" {
			return r, fmt.Errorf("rank %d: %s", p.rank, r.Err)
		}
		return r, nil
	case err := <-p.readErr:
		p.readErr <- err // later calls fail the same way
		return reply{}, p.died(err)
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// died explains a broken pipe by the worker's exit status when it comes soon.
func (p *rankProc) died(cause error) error {
	select {
	case <-p.exited:
		status := "exit status 0"
		if p.waitErr != nil {
			status = p.waitErr.Error()
		}
		return fmt.Errorf("rank %d worker (pid %d) ended unexpectedly (%s); the demo target cannot go on without it", p.rank, p.pid, status)
	case <-time.After(2 * time.Second):
		return fmt.Errorf("rank %d worker (pid %d) stopped answering: %w", p.rank, p.pid, cause)
	}
}

// stop ends the worker: closing stdin asks it to leave, SIGTERM makes sure, SIGKILL after
// grace. It waits until the process is reaped.
func (p *rankProc) stop(grace time.Duration) {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.in.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.exited
	}
}
