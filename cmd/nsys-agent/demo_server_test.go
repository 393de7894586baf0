package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// TestDemoServer runs the built-in demo target as a user would: the real binary (installed
// in PATH by testscript.Main in TestMain), its rank workers re-executed from it, a profiling
// window over HTTP, then SIGTERM.
func TestDemoServer(t *testing.T) {
	bin, err := exec.LookPath("nsys-agent")
	if err != nil {
		t.Fatalf("nsys-agent not in PATH (TestMain installs it): %v", err)
	}
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	var out bytes.Buffer
	cmd := exec.Command(bin, "demo-server", "--port", "0", "--ranks", "2", "--ready-file", ready)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	var url string
	waitFor(t, "ready file", func() bool {
		b, err := os.ReadFile(ready)
		url = strings.TrimSpace(string(b))
		return err == nil
	})
	workers := childrenOf(t, cmd.Process.Pid)
	if len(workers) != 2 {
		t.Fatalf("workers of %d: %v, want 2", cmd.Process.Pid, workers)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}
	post := func(path, body string) string {
		t.Helper()
		resp, err := client.Post(url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	traces := filepath.Join(dir, "window")
	post("/start_profile", `{"output_dir":"`+traces+`","activities":["CPU","GPU"]}`)
	post("/v1/completions", `{"prompt":"hi","max_tokens":2}`)
	post("/stop_profile", "")
	got, _ := filepath.Glob(filepath.Join(traces, "*-TP-[01].trace.json.gz"))
	if len(got) != 2 {
		t.Fatalf("traces %v, want one per rank", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("demo-server after SIGTERM: %v, want exit 0\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo-server still running 60s after SIGTERM")
	}
	// Pdeathsig and the closed stdin end the workers even if the server did not wait.
	waitFor(t, "workers to exit", func() bool {
		for _, pid := range workers {
			if syscall.Kill(pid, 0) == nil {
				return false
			}
		}
		return true
	})
	if !strings.Contains(out.String(), "The server is fired up and ready to roll!") {
		t.Errorf("no ready line in output:\n%s", out.String())
	}
}

func TestDemoServerUsage(t *testing.T) {
	for _, args := range [][]string{
		{"demo-server", "--ranks", "0"},
		{"demo-server", "--ranks", "65"},
		{"demo-server", "--port", "-1"},
		{"demo-server", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"nsys-agent"}, args...), &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", args, code, exitUsage, stderr.String())
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childrenOf lists the live (not zombie) child processes of pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	desc, err := procs.Default.Descendants(pid)
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	var kids []int
	for _, p := range desc {
		if p.PPID == pid && p.State != "Z" {
			kids = append(kids, p.PID)
		}
	}
	return kids
}
