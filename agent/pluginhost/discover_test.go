package pluginhost

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// TestDiscoverSkipReasons builds a plugin dir of real files, one per case, and checks
// that each is kept or skipped with a reason that names the fix.
func TestDiscoverSkipReasons(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir() // where links point
	install(t, dir, "good", 0o755)
	install(t, dir, "plain", 0o644)
	install(t, dir, "groupw", 0o775)
	install(t, dir, "worldw", 0o757)
	install(t, dir, "Bad.Name", 0o755)
	if err := os.Mkdir(filepath.Join(dir, Prefix+"adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, Prefix+"fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nsys-agent"), []byte("not a plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link to a good file elsewhere is followed; a dangling one is not.
	target := install(t, other, "linked", 0o755)
	if err := os.Symlink(target, filepath.Join(dir, Prefix+"vialink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "gone"), filepath.Join(dir, Prefix+"dangling")); err != nil {
		t.Fatal(err)
	}
	// A link into a folder anyone may write: the file could be swapped behind the check.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(install(t, open, "x", 0o755), filepath.Join(dir, Prefix+"openlink")); err != nil {
		t.Fatal(err)
	}
	// A sticky world-writable folder (as /tmp) is fine: others cannot replace our file.
	sticky := filepath.Join(t.TempDir(), "sticky")
	if err := os.Mkdir(sticky, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(install(t, sticky, "y", 0o755), filepath.Join(dir, Prefix+"stickylink")); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(installCopy(t, dir, "stranger", 0o755), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}

	found, skipped, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range found {
		names = append(names, c.Name)
		if !filepath.IsAbs(c.Path) {
			t.Errorf("%s: path %q is not absolute", c.Name, c.Path)
		}
	}
	if got := strings.Join(names, ","); got != "good,stickylink,vialink" {
		t.Errorf("found %s, want good,stickylink,vialink", got)
	}
	for _, c := range found {
		if c.Name == "vialink" && c.Path != target {
			t.Errorf("a link runs its target %s, not %s", target, c.Path)
		}
	}
	why := map[string]string{}
	for _, s := range skipped {
		why[filepath.Base(s.Path)] = s.Reason
	}
	for _, tc := range []struct {
		file string
		want string // a part of the reason
	}{
		{"plain", "not executable (mode 0644); run chmod +x"},
		{"groupw", "writable by other users (mode 0775)"},
		{"worldw", "run chmod go-w"},
		{"Bad.Name", `"Bad.Name" is not a backend name`},
		{"adir", "it is a directory"},
		{"fifo", "not a regular file"},
		{"dangling", "symbolic link to nothing usable"},
		{"openlink", "its directory " + open + " is writable by other users (mode 0777)"},
		{"stranger", "owned by uid 65534, neither root nor the agent's user"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if tc.file == "stranger" && !root {
				nsystest.Missing(t, "only root can make a file owned by another user")
			}
			got, ok := why[Prefix+tc.file]
			if !ok {
				t.Fatalf("%s not skipped (skipped: %v)", tc.file, why)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("reason %q does not say %q", got, tc.want)
			}
		})
	}
	if _, ok := why["nsys-agent"]; ok {
		t.Error("a file without the plugin prefix is not the discovery's business")
	}
	wantSkipped := 8
	if root {
		wantSkipped++
	}
	if len(skipped) != wantSkipped {
		t.Errorf("%d skipped, want %d: %v", len(skipped), wantSkipped, why)
	}
}

func TestDiscoverMissingDir(t *testing.T) {
	_, _, err := Discover(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "--plugin-dir") {
		t.Errorf("error %v should say the folder does not exist and what to give", err)
	}
}
