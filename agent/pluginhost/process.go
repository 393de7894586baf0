package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// process is one run of a plugin binary: the go-plugin client that launched it and the
// backend it dispensed.
type process struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	backend shared.Backend
	stderr  *tail
	pid     int
	log     *slogger

	mu     sync.Mutex
	killed string // why the agent killed it ("" = it was not killed by the agent)
}

// launch starts the plugin at path and fingerprints it with Info. name is what logs call
// it until its Info says otherwise. On error nothing is left running.
func launch(ctx context.Context, path, name string, o Options) (*process, shared.Info, error) {
	cmd := exec.Command(path)
	// The plugin's environment is exactly o.Env (SkipHostEnv): go-plugin would otherwise
	// append the agent's whole environment, its token included.
	cmd.Env = slices.Clone(o.Env)
	// The kernel kills the plugin when the agent dies, even by SIGKILL, so no plugin
	// outlives its agent. Pdeathsig follows the OS thread that forked, and the Go runtime
	// ends a thread only when a goroutine locked to it exits; nothing here locks one.
	// Its own process group: a terminal's Ctrl-C goes to the agent alone, which shuts
	// plugins down in order, and kill can end what a plugin started with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	pr := &process{cmd: cmd, stderr: &tail{}, log: newLogger(o.Log, name)}
	pr.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap(nil),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     o.StartTimeout,
		Logger:           pr.log,
		Stderr:           pr.stderr,
		// What the plugin writes to os.Stdout/os.Stderr after Serve travels over
		// go-plugin's stdio stream (a panic still goes to fd 2, the Stderr above).
		SyncStderr: pr.stderr,
		SyncStdout: io.Discard,
	})
	rpc, err := pr.client.Client()
	if cmd.Process != nil {
		pr.pid = cmd.Process.Pid
	}
	if err != nil {
		err = pr.startError(err, o.StartTimeout)
		pr.abort()
		return nil, shared.Info{}, err
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		pr.abort()
		return nil, shared.Info{}, fmt.Errorf("it started (pid %d) but does not serve a %q plugin: %v%s", pr.pid, shared.PluginName, err, pr.stderr)
	}
	b, ok := raw.(shared.Backend)
	if !ok {
		pr.abort()
		return nil, shared.Info{}, fmt.Errorf("its %q plugin is a %T, not a backend", shared.PluginName, raw)
	}
	pr.backend = b
	ictx, cancel := context.WithTimeout(ctx, o.InfoTimeout)
	defer cancel()
	info, err := b.Info(ictx)
	if err != nil {
		pr.abort()
		if errors.Is(ictx.Err(), context.DeadlineExceeded) {
			return nil, shared.Info{}, fmt.Errorf("it started (pid %d) but did not answer Info within %s%s", pr.pid, o.InfoTimeout, pr.stderr)
		}
		return nil, shared.Info{}, fmt.Errorf("it started (pid %d) but its Info failed: %v%s", pr.pid, err, pr.stderr)
	}
	if info.Name == "" {
		pr.abort()
		return nil, shared.Info{}, fmt.Errorf("it answered Info without a backend name")
	}
	if info.APIVersion != shared.APIVersion {
		pr.abort()
		return nil, shared.Info{}, fmt.Errorf("it is built for backend API version %d; this agent speaks %d: rebuild it against this agent's plugins/shared", info.APIVersion, shared.APIVersion)
	}
	return pr, info, nil
}

// incompatibleRE is go-plugin's handshake refusal of another protocol version.
var incompatibleRE = regexp.MustCompile(`(?i)Incompatible API version with plugin\. Plugin version: (\d+), Client versions: \[([\d ]+)\]`)

// startError says why a launch did not reach a plugin that answers, from go-plugin's
// error (whose first line is the news; the rest is generic advice) and the plugin's own
// last words.
func (pr *process) startError(err error, timeout time.Duration) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	switch {
	case incompatibleRE.MatchString(msg):
		m := incompatibleRE.FindStringSubmatch(msg)
		return fmt.Errorf("it speaks plugin protocol version %s; this agent speaks %s: rebuild it against this agent's plugins/shared", m[1], m[2])
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("it did not complete the go-plugin handshake within %s (is it a backend plugin? plugins call shared.Serve)%s", timeout, pr.stderr)
	case strings.Contains(msg, "plugin exited before we could connect"),
		strings.TrimSpace(msg) == "Unrecognized remote plugin message:" && pr.exited(time.Second):
		// A plugin that exits closes its stdout: go-plugin reads an empty line first.
		return fmt.Errorf("it exited before the go-plugin handshake (%s)%s", pr.status(), pr.stderr)
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		return fmt.Errorf("it is not a go-plugin plugin: it wrote something other than the handshake on stdout (%s)%s", msg, pr.stderr)
	}
	return fmt.Errorf("it did not start: %s%s", msg, pr.stderr)
}

// exited reports whether the process has ended, waiting up to wait for it to (a crash
// is seen by the gRPC call a moment before the process is reaped).
func (pr *process) exited(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		if pr.client.Exited() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status says how the process ended: "exit status 3", "signal: killed", or why the agent
// killed it.
func (pr *process) status() string {
	pr.mu.Lock()
	killed := pr.killed
	pr.mu.Unlock()
	if killed != "" {
		return "killed by the agent: " + killed
	}
	// ProcessState is written by go-plugin's Wait before it marks the client exited
	// under its lock, which Exited takes: reading it after Exited is ordered.
	if pr.client.Exited() && pr.cmd.ProcessState != nil {
		return pr.cmd.ProcessState.String()
	}
	return "status unknown"
}

// abort ends a process that never became a usable plugin: its whole group at once (a
// script's children hold its pipes, and go-plugin waits for them to close), then what
// go-plugin keeps for it.
func (pr *process) abort() {
	if pr.pid > 0 {
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
	pr.client.Kill()
}

// killGrace is how long kill waits for go-plugin's own Kill (graceful shutdown RPC, 2 s,
// then SIGKILL of the plugin) before it kills the plugin's process group: a child the
// plugin started holds its stderr open, and go-plugin waits for that to close.
const killGrace = 3 * time.Second

// kill ends the process (go-plugin's Kill: a graceful shutdown RPC, then SIGKILL after
// 2 s) and says why in later errors.
func (pr *process) kill(why string) {
	pr.log.ending.Store(true)
	pr.mu.Lock()
	if pr.killed == "" && why != "" && !pr.client.Exited() {
		pr.killed = why
	}
	pr.mu.Unlock()
	done := make(chan struct{})
	go func() { pr.client.Kill(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(killGrace):
	}
	if pr.pid > 0 {
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
	<-done
}
