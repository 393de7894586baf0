package demotarget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// Options configures the demo server. Zero values pick the defaults.
type Options struct {
	Host      string // listen address; default 127.0.0.1
	Port      int    // 0 picks a free port
	Ranks     int    // worker processes (tp_size); default 2
	ReadyFile string // written with the server's URL once it answers; removed on exit
	Stdout    io.Writer
	Stderr    io.Writer

	// WorkerCommand is the program and leading arguments that run RunWorker; "--rank R" is
	// appended. Default: this executable's "demo-worker" command.
	WorkerCommand []string
	// StepWork is the CPU work of one decode step on rank 0 (default 20ms); rank 1 is 1.4x
	// slower so that imbalance analysis finds something. StepGap is the idle time after
	// each step (default 25ms), spent in libc's usleep when built with cgo.
	StepWork time.Duration
	StepGap  time.Duration
}

// Defaults and limits.
const (
	DefaultRanks   = 2
	MaxRanks       = 64
	ModelPath      = "nsys-agent/demo"
	stragglerSlow  = 1.4
	defaultWork    = 20 * time.Millisecond
	defaultGap     = 25 * time.Millisecond
	shutdownGrace  = 5 * time.Second
	sglangVersion  = "0.5.5+nsys-agent-demo" // PEP 440 local label: parses as a version, says what it is
	readyLogLine   = "The server is fired up and ready to roll!"
	workerSubcmd   = "demo-worker"
	defaultLogHost = "127.0.0.1"
)

func (o *Options) setDefaults() error {
	if o.Host == "" {
		o.Host = defaultLogHost
	}
	if o.Ranks == 0 {
		o.Ranks = DefaultRanks
	}
	if o.Ranks < 1 || o.Ranks > MaxRanks {
		return fmt.Errorf("ranks must be between 1 and %d, not %d", MaxRanks, o.Ranks)
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("port must be between 0 and 65535, not %d", o.Port)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.StepWork <= 0 {
		o.StepWork = defaultWork
	}
	if o.StepGap <= 0 {
		o.StepGap = defaultGap
	}
	if len(o.WorkerCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this executable to start rank workers: %w", err)
		}
		o.WorkerCommand = []string{exe, workerSubcmd}
	}
	return nil
}

// Run serves the demo target until ctx is done (then it returns nil) or a rank worker dies
// (then it returns an error naming the rank). It stops its workers before returning.
func Run(ctx context.Context, o Options) (err error) {
	if err := o.setDefaults(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w (pick another --port, or 0 for a free one)", o.Host, o.Port, err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	url := "http://" + net.JoinHostPort(o.Host, strconv.Itoa(addr.Port))
	log := &logger{w: o.Stdout, tpTags: o.Ranks > 1}
	if ip := net.ParseIP(o.Host); (ip == nil && o.Host != "localhost") || (ip != nil && !ip.IsLoopback()) {
		fmt.Fprintf(o.Stderr, "demo-server: warning: listening on %s without authentication; anyone who reaches it can make it write trace files to any folder it may write (output_dir)\n", o.Host)
	}
	log.printf("server_args=ServerArgs(model_path='%s', tp_size=%d, host='%s', port=%d, device='cpu', disable_cuda_graph=True)",
		ModelPath, o.Ranks, o.Host, addr.Port)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ranks := make([]*rankProc, 0, o.Ranks)
	defer func() {
		// Stop all ranks at once: each waits up to the grace period.
		var wg sync.WaitGroup
		for _, r := range ranks {
			wg.Go(func() { r.stop(shutdownGrace) })
		}
		wg.Wait()
	}()
	for rank := range o.Ranks {
		slow := 1.0
		if rank == 1 {
			slow = stragglerSlow
		}
		r, err := startRank(runCtx, &o, initArgs{Rank: rank, WorldSize: o.Ranks,
			StepWork: o.StepWork, StepGap: o.StepGap, Slowdown: slow})
		if err != nil {
			return err
		}
		ranks = append(ranks, r)
		log.rankf(rank, "Rank %d worker started (pid %d)", rank, r.pid)
	}
	if !idleViaLibc {
		fmt.Fprintln(o.Stderr, "demo-server: built without cgo: the workers' idle time does not go through libc, so nsys --trace=osrt shows no activity for them")
	}

	sched := newScheduler(ranks, log)
	srv := &http.Server{
		Handler:           newHandler(sched, &o, addr.Port),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return runCtx },
	}
	schedErr := make(chan error, 1)
	go func() { schedErr <- sched.run(runCtx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	if o.ReadyFile != "" {
		if err := atomicfile.Write(o.ReadyFile, []byte(url+"\n"), 0o600); err != nil {
			cancel()
			srv.Close()
			<-serveErr
			<-schedErr
			return fmt.Errorf("write ready file: %w", err)
		}
		defer os.Remove(o.ReadyFile)
	}
	log.printf("%s", readyLogLine)
	fmt.Fprintf(o.Stdout, "demo-server: SGLang-compatible demo target ready at %s (ranks %d)\n", url, o.Ranks)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-schedErr:
		schedErr <- runErr
	case runErr = <-serveErr:
		serveErr <- runErr
	}
	cancel()
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer shutCancel()
	srv.Shutdown(shutCtx)
	if err := <-serveErr; runErr == nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = err
	}
	if err := <-schedErr; runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return fmt.Errorf("demo target: %w", runErr)
	}
	return nil
}
