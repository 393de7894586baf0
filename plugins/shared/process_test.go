package shared_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// waitGone waits up to within for pid to be gone (a zombie counts as gone: its parent may
// be an init that does not reap) and reports whether it went.
func waitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !procs.Alive(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestPluginKilledMidStopIsErrPluginExitedAtOnce(t *testing.T) {
	b, c := startPlugin(t, shared.Handshake)
	pid := c.ReattachConfig().Pid
	w := fullWindow(t, map[string]string{"Stop.block": "1"})
	done := make(chan error, 1)
	go func() { _, err := b.Stop(context.Background(), w, shared.Discard); done <- err }()
	waitFile(t, filepath.Join(w.Dir, "Stop.begun"))

	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, shared.ErrPluginExited) {
			t.Errorf("Stop of a killed plugin: %v, want ErrPluginExited", err)
		}
		t.Logf("Stop answered %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("Stop still waits 10 s after its plugin was killed")
	}
	// Every later call answers at once too, whatever context it has.
	begin := time.Now()
	if _, err := b.Info(context.Background()); !errors.Is(err, shared.ErrPluginExited) {
		t.Errorf("Info of a dead plugin: %v, want ErrPluginExited", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Info of a dead plugin took %v", took)
	}
}

func TestHandshakeMismatchIsRefused(t *testing.T) {
	wrongCookie := shared.Handshake
	wrongCookie.MagicCookieValue = "not-the-agent"
	c, logs := newClient(t, wrongCookie, exec.Command(pluginBin))
	if _, err := c.Client(); err == nil {
		t.Fatal("a plugin started with the wrong cookie was accepted")
	}
	if !waitLog(logs, "is an nsys-agent backend plugin, not a command") {
		t.Errorf("the plugin's refusal does not say why; host log:\n%s", logs)
	}

	newer := shared.Handshake
	newer.ProtocolVersion = shared.APIVersion + 1
	c, _ = newClient(t, newer, exec.Command(pluginBin))
	_, err := c.Client()
	want := "Plugin version: " + strconv.Itoa(shared.APIVersion) + ", Client versions: [" + strconv.Itoa(shared.APIVersion+1) + "]"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a plugin of another contract version: %v, want an error naming both (%s)", err, want)
	}
}

// waitLog: the plugin's stderr reaches the host's log through a goroutine of go-plugin's.
func waitLog(logs *syncBuffer, text string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(logs.String(), text) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestRunByHandTheBinarySaysWhatItIs(t *testing.T) {
	out, err := exec.Command(pluginBin).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("run by hand: %v, want exit status 1", err)
	}
	if !strings.Contains(string(out), "nsys-agent starts it itself") {
		t.Errorf("run by hand it says %q", out)
	}
}

// TestServeExitsWhenItsParentDies: a shell stands for the agent and launches the plugin
// with the handshake cookie; SIGKILL on the shell (no chance to clean up, no Pdeathsig)
// must still end the plugin within a few seconds.
func TestServeExitsWhenItsParentDies(t *testing.T) {
	stderr := filepath.Join(t.TempDir(), "plugin.stderr")
	middle := exec.Command("sh", "-c", `"$1" >/dev/null 2>"$2" & echo $!; wait`, "sh", pluginBin, stderr)
	middle.Env = append(os.Environ(), shared.Handshake.MagicCookieKey+"="+shared.Handshake.MagicCookieValue)
	out, err := middle.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := middle.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = middle.Process.Kill(); _ = middle.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the plugin's pid from the shell: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the shell printed %q, not a pid", line)
	}
	t.Cleanup(func() {
		if procs.Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// The plugin must be serving (its parent watch armed) before its parent dies; go-plugin
	// logs its address once it listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(stderr)
		if strings.Contains(string(b), "plugin address") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin never started serving; its stderr:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := middle.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = middle.Wait()
	killed := time.Now()
	if !waitGone(pid, 5*time.Second) {
		b, _ := os.ReadFile(stderr)
		t.Fatalf("plugin %d still runs 5 s after its parent was killed; its stderr:\n%s", pid, b)
	}
	t.Logf("the plugin exited %v after its parent", time.Since(killed).Round(time.Millisecond))
	if b, _ := os.ReadFile(stderr); !strings.Contains(string(b), "the agent that started this plugin is gone") {
		t.Errorf("the plugin exited without saying why; its stderr:\n%s", b)
	}
}
