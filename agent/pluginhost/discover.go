// Package pluginhost finds, launches and keeps the agent's backend plugins: separate
// binaries named nsys-agent-backend-NAME that serve the backend contract
// (plugins/shared) over hashicorp/go-plugin gRPC. Discover decides which files may run
// (a plugin runs with the agent's rights, so ownership and modes are checked); Load
// launches each, fingerprints it with Info and keeps those that answer; a kept Plugin is
// a shared.Backend whose process stays up for the agent's life, is relaunched for the
// next window after a crash, and is killed by Close or, through Pdeathsig, by the
// agent's own death.
package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// Prefix starts the file name of every backend plugin: nsys-agent-backend-torch serves
// the backend named torch.
const Prefix = "nsys-agent-backend-"

// Candidate is a plugin file that passed discovery's checks.
type Candidate struct {
	Name string // the name in the file name, after Prefix
	Path string // what is executed: the file, with symbolic links resolved
	File string // the file as found in the plugin directory
}

// Skip is a plugin file (or, after Load, a plugin process) that is not used, and why, in
// words that say what to do about it.
type Skip struct {
	Path   string `json:"path"`
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason"`
}

// nameRE is what a backend name may be: the file name is the only place it is chosen
// before the plugin runs, and it ends up in logs, URLs and flags.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Discover lists the plugin files in dir, in name order, and the ones it will not run.
// Only files named Prefix+NAME are considered; anything else in dir (the agent's own
// binary, for one) is none of its business.
//
// A plugin runs with the agent's rights, often root's, so a file is run only if nobody
// but its owner could have written it: owned by root or by the agent's user, not
// writable by group or others, in a directory that is not writable by group or others
// either (unless sticky, as /tmp is: there others may add files but not replace ours).
// Symbolic links are followed, to anywhere: `make build` output or a package's lib
// folder linked into the plugin dir is a normal install, and every check applies to the
// file the link resolves to and its directory, so a link lowers no bar. A dangling link
// is skipped.
func Discover(dir string) ([]Candidate, []Skip, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("plugin dir %s does not exist: %w (give --plugin-dir an existing folder)", dir, err)
		}
		return nil, nil, fmt.Errorf("reading the plugin dir %s: %w", dir, err)
	}
	var found []Candidate
	var skipped []Skip
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		file := filepath.Join(dir, e.Name())
		c, why := check(file, strings.TrimPrefix(e.Name(), Prefix))
		if why != "" {
			skipped = append(skipped, Skip{Path: file, Name: c.Name, Reason: why})
			continue
		}
		found = append(found, c)
	}
	return found, skipped, nil
}

// check decides whether file may run as the plugin name; why says what is wrong, "" if
// nothing is.
func check(file, name string) (c Candidate, why string) {
	c = Candidate{Name: name, File: file, Path: file}
	if !nameRE.MatchString(name) {
		return c, fmt.Sprintf("%q is not a backend name (lower-case letters, digits and '-', at most 63); rename the file to %sNAME", name, Prefix)
	}
	resolved, err := filepath.EvalSymlinks(file)
	if err != nil {
		return c, fmt.Sprintf("it is a symbolic link to nothing usable (%v); fix or remove the link", err)
	}
	if resolved, err = filepath.Abs(resolved); err != nil {
		return c, fmt.Sprintf("cannot make its path absolute: %v", err)
	}
	c.Path = resolved
	via := ""
	if resolved != file {
		via = " (via the link " + file + ")"
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return c, fmt.Sprintf("cannot read %s: %v", resolved, err)
	}
	switch {
	case fi.IsDir():
		return c, "it is a directory" + via
	case !fi.Mode().IsRegular():
		return c, fmt.Sprintf("it is not a regular file (%s)%s", fi.Mode().Type(), via)
	}
	if err := syscall.Access(resolved, 1 /* X_OK */); err != nil || fi.Mode().Perm()&0o111 == 0 {
		return c, fmt.Sprintf("it is not executable (mode %04o); run chmod +x %s%s", fi.Mode().Perm(), resolved, via)
	}
	if why := writableBy(resolved, fi); why != "" {
		return c, why + via
	}
	dir := filepath.Dir(resolved)
	di, err := os.Stat(dir)
	if err != nil {
		return c, fmt.Sprintf("cannot read its directory %s: %v", dir, err)
	}
	if di.Mode().Perm()&0o022 != 0 && di.Mode()&fs.ModeSticky == 0 {
		return c, fmt.Sprintf("its directory %s is writable by other users (mode %04o): anyone could replace the plugin, which runs with the agent's rights; run chmod go-w %s%s", dir, di.Mode().Perm(), dir, via)
	}
	return c, ""
}

// writableBy says why a file someone else could have written must not run, "" if it may.
func writableBy(path string, fi fs.FileInfo) string {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("it is writable by other users (mode %04o): anyone could change the plugin, which runs with the agent's rights; run chmod go-w %s", fi.Mode().Perm(), path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("cannot tell who owns %s", path)
	}
	if me := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != me {
		return fmt.Sprintf("it is owned by uid %d, neither root nor the agent's user (uid %d), and would run with the agent's rights; run chown %d %s if you trust it", st.Uid, me, me, path)
	}
	return ""
}
