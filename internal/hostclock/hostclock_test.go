package hostclock

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary a child that prints its clocks (TestMain): the hook is
// read once per process, so a shifted clock is only seen in a process started with it.
const helperEnv = "HOSTCLOCK_TEST_PRINT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		value, err := Hook()
		// Shifted, real, shift, monotonic: read back to back.
		fmt.Printf("%d %d %d %d %q %v\n", Now().UnixNano(), time.Now().UnixNano(), Shift(), Mono(), value, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseShift(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"-2.5s", -2500 * time.Millisecond, true},
		{"+3s", 3 * time.Second, true},
		{"1h", time.Hour, true},
		{"0", 0, true},
		{"3", 0, false}, // a number without unit is no duration
		{"soon", 0, false},
		{" 1s", 0, false},
	} {
		got, err := ParseShift(c.in)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseShift(%q) = %v, %v; want %v, ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), ShiftEnv) {
			t.Errorf("ParseShift(%q): the error should name %s: %v", c.in, ShiftEnv, err)
		}
	}
}

// TestShiftedProcess runs this test binary with the hook set, as an agent is run: its Now
// is the real clock plus the shift, its monotonic clock is not shifted, and a value that
// is no duration leaves the clock as it is and says why.
func TestShiftedProcess(t *testing.T) {
	for _, c := range []struct {
		value   string
		shift   time.Duration
		invalid bool
	}{
		{"", 0, false},
		{"-2.5s", -2500 * time.Millisecond, false},
		{"1h", time.Hour, false},
		{"yesterday", 0, true},
	} {
		t.Run(c.value, func(t *testing.T) {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", ShiftEnv+"="+c.value)
			before := Mono()
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helper: %v", err)
			}
			f := strings.SplitN(strings.TrimSpace(string(out)), " ", 6)
			if len(f) != 6 {
				t.Fatalf("helper printed %q", out)
			}
			shifted, _ := strconv.ParseInt(f[0], 10, 64)
			real, _ := strconv.ParseInt(f[1], 10, 64)
			shift, _ := strconv.ParseInt(f[2], 10, 64)
			mono, _ := strconv.ParseInt(f[3], 10, 64)
			if time.Duration(shift) != c.shift {
				t.Errorf("Shift() = %v, want %v", time.Duration(shift), c.shift)
			}
			// Read a few microseconds apart: a millisecond is ample on a loaded machine.
			if d := time.Duration(shifted-real) - c.shift; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("Now() - time.Now() = %v, want %v", time.Duration(shifted-real), c.shift)
			}
			// CLOCK_MONOTONIC is system-wide: the child's reading lies between ours.
			if after := Mono(); mono < before || mono > after {
				t.Errorf("the child's Mono %d is not between the parent's %d and %d: it must not be shifted", mono, before, after)
			}
			if got := strings.Trim(f[4], `"`); got != c.value {
				t.Errorf("Hook() value %q, want %q", got, c.value)
			}
			if invalid := f[5] != "<nil>"; invalid != c.invalid {
				t.Errorf("Hook() error %q, want an error: %v", f[5], c.invalid)
			}
		})
	}
}
