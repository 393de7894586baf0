package pluginhost

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// testPlugin is the scripted plugin (internal/testplugin), built once for the package.
var testPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pluginhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testPlugin, "./internal/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the test plugin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// install puts the test plugin into dir as the plugin name, with mode; a hard link when
// the mode is the build's own (copying 19 MB per plugin adds up), a copy otherwise.
func install(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	dst := filepath.Join(dir, Prefix+name)
	if mode == 0o755 {
		if err := os.Link(testPlugin, dst); err == nil {
			return dst
		}
	}
	return installCopy(t, dir, name, mode)
}

// installCopy is install with a file of its own, whose mode and owner a test may change.
func installCopy(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	dst := filepath.Join(dir, Prefix+name)
	src, err := os.Open(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return dst
}

// behave sets what the plugin name does (NSYS_AGENT_TESTPLUGIN_<NAME>, see testplugin).
func behave(env []string, name, spec string) []string {
	return append(env, "NSYS_AGENT_TESTPLUGIN_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+spec)
}

// logBuffer is a slog destination tests read back.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testOptions(t *testing.T, env []string) (Options, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", lb)
		}
	})
	return Options{Log: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), Env: env}, lb
}
