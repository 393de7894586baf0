package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with nothing but syscall: tests of what a person
// at a terminal sees (progress bars) write to the returned tty and read the master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal (/dev/ptmx): %v", err)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Fatalf("TIOCGPTN: %v", e)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Fatalf("TIOCSPTLCK: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("opening the pty's terminal: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestIsTerminal: a terminal is one; /dev/null (a character device too), a file and a
// pipe are not.
func TestIsTerminal(t *testing.T) {
	_, tty := openPTY(t)
	if !isTerminal(tty) {
		t.Errorf("a pty is not seen as a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, f := range map[string]*os.File{"/dev/null": null, "a pipe": w} {
		if isTerminal(f) {
			t.Errorf("%s is seen as a terminal", name)
		}
	}
}

// TestPullShowsProgressOnATerminal: on a terminal, pull draws bytes, speed and what is
// left on stderr; in a pipe it stays quiet.
func TestPullShowsProgressOnATerminal(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w7", map[string]string{"report.nsys-rep": strings.Repeat("x", 3<<20)})
	master, tty := openPTY(t)
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		io.Copy(&screen, master) // ends with EIO once the terminal side is closed
	}()
	var out bytes.Buffer
	code := run([]string{"nsys-agent", "pull", "w7", "--agent", url, "--dir", t.TempDir()}, &out, tty)
	tty.Close()
	<-read
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), screen.String())
	}
	for _, want := range []string{"pull w7", "3.0 MiB", "/s"} {
		if !strings.Contains(screen.String(), want) {
			t.Errorf("the terminal shows no %q:\n%q", want, screen.String())
		}
	}

	r := runCLI(t, "pull", "w7", "--agent", url, "--dir", t.TempDir()).must(t, 0)
	if r.stderr != "" {
		t.Errorf("pull drew progress into a pipe:\n%q", r.stderr)
	}
}
