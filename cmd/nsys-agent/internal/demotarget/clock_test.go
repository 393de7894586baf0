package demotarget

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// serveEnv makes the test binary a demo server writing its URL to the file it names (see
// TestMain): the clock-shift hook is read once per process, so a shifted server is a
// process of its own, started with the hook as an agent starts its target.
const serveEnv = "DEMOTARGET_TEST_SERVE"

func testServerMain(ready string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = Run(ctx, Options{Port: 0, Ranks: 2, ReadyFile: ready, Stdout: os.Stderr, Stderr: os.Stderr,
		WorkerCommand: []string{exe, workerSubcmd}, StepWork: 2 * time.Millisecond, StepGap: 3 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestTracesOnShiftedClock (issue 14): a demo server started with the clock-shift hook,
// as a shifted agent starts it, writes its rank traces on the shifted clock: each
// trace's baseTimeNanoseconds plus its first ts is the shifted time of the profile, so a
// group's merge sees the same disagreement between hosts in traces as in manifests.
func TestTracesOnShiftedClock(t *testing.T) {
	const shift = time.Hour
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	out := &nsystest.Buffer{}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+ready, hostclock.ShiftEnv+"=1h")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the shifted server exited with %v:\n%s", err, out)
			}
		case <-time.After(deadline):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the shifted server did not end on SIGTERM:\n%s", out)
		}
	}()
	s := &testServer{t: t, out: out}
	poll(t, "the shifted server's ready file", func() bool {
		b, err := os.ReadFile(ready)
		s.url = strings.TrimSpace(string(b))
		return err == nil && s.url != ""
	})

	dir := t.TempDir()
	before := time.Now()
	s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","activities":["CPU","GPU"],"num_steps":3}`, 200, startOK)
	poll(t, "2 traces", func() bool { return len(traces(t, dir)) == 2 })
	after := time.Now()
	for _, n := range traces(t, dir) {
		tr := readTrace(t, filepath.Join(dir, n))
		first := math.Inf(1)
		for _, e := range tr.TraceEvents {
			first = min(first, e.TS)
		}
		if len(tr.TraceEvents) == 0 {
			t.Fatalf("%s: no events", n)
		}
		abs := time.Unix(0, tr.BaseTimeNanoseconds+int64(first*1e3))
		// Within a second of the machine's clock plus the shift, over the profile's span.
		if lo, hi := before.Add(shift-time.Second), after.Add(shift+time.Second); abs.Before(lo) || abs.After(hi) {
			t.Errorf("%s: baseTimeNanoseconds + first ts = %s, want between %s and %s (the machine's clock + %v)",
				n, abs.Format(time.RFC3339Nano), lo.Format(time.RFC3339Nano), hi.Format(time.RFC3339Nano), shift)
		}
		// Every rank shares the profile's base, taken on the shifted clock (to the second).
		if base := time.Unix(0, tr.BaseTimeNanoseconds); base.Before(before.Add(shift-time.Second)) || base.After(after.Add(shift)) {
			t.Errorf("%s: baseTimeNanoseconds %s is not on the shifted clock", n, base.Format(time.RFC3339Nano))
		}
	}
}
