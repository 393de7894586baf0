// Package procs reads processes from a proc file system: command lines, environments and
// who is whose parent. It is the one place nsys-agent reads /proc, built on
// github.com/prometheus/procfs so that tests can point it at a fake tree (testdata/proc),
// and so that nothing here runs another program: gopsutil v3's Children shells out to
// pgrep and reports "no children" as exit status 1.
package procs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// DefaultRoot is where the kernel's proc file system is mounted.
const DefaultRoot = procfs.DefaultMountPoint

// Reader reads one proc tree. It holds nothing but the root: every call reads the tree
// as it is now. Processes that end while a walk reads them are left out of the walk.
type Reader struct {
	root string
	fs   procfs.FS
	err  error // why root could not be opened (only Default keeps one); every method returns it
}

// Default reads this machine's /proc. Where there is none, its methods return the error.
var Default = open(DefaultRoot)

// New returns a reader of the proc tree at root ("" = /proc). Tests pass a fake tree:
// NUL-separated cmdline and environ files, and stat lines in the kernel's format.
func New(root string) (*Reader, error) {
	if root == "" {
		root = DefaultRoot
	}
	r := open(root)
	if r.err != nil {
		return nil, r.err
	}
	return r, nil
}

func open(root string) *Reader {
	fs, err := procfs.NewFS(root)
	if err != nil {
		err = fmt.Errorf("reading processes from %s: %w", root, err)
	}
	return &Reader{root: root, fs: fs, err: err}
}

// Root is the proc tree this reader reads.
func (r *Reader) Root() string { return r.root }

// Proc is one process as its stat line shows it.
type Proc struct {
	PID  int
	PPID int
	// Comm is the kernel's short name of the process (at most 15 bytes), e.g.
	// "nsys-launcher" for nsys' own helper in a target's tree.
	Comm string
	// State is the stat line's state letter: "R", "S", ..., "Z" for a zombie (ended, not
	// yet reaped by its parent).
	State string
}

// PIDs lists the processes now running, in ascending order (threads are not listed).
func (r *Reader) PIDs() ([]int, error) {
	all, err := r.all()
	if err != nil {
		return nil, err
	}
	pids := make([]int, len(all))
	for i, p := range all {
		pids[i] = p.PID
	}
	return pids, nil
}

// Cmdline returns a process's arguments, argv[0] first. It is empty for kernel threads
// and for processes that have exited but not been reaped.
func (r *Reader) Cmdline(pid int) ([]string, error) {
	p, err := r.proc(pid)
	if err != nil {
		return nil, err
	}
	args, err := p.CmdLine()
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	return args, nil
}

// Environ returns the environment a process started with, as KEY=VALUE strings. The
// kernel shows the environment given to exec: later setenv calls in the process do not
// appear. Another user's processes are unreadable (an error wrapping fs.ErrPermission).
func (r *Reader) Environ(pid int) ([]string, error) {
	p, err := r.proc(pid)
	if err != nil {
		return nil, err
	}
	env, err := p.Environ()
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	return env, nil
}

// LookupEnv returns the value of one variable in a process's environment (see Environ),
// and whether it was there.
func (r *Reader) LookupEnv(pid int, name string) (string, bool, error) {
	env, err := r.Environ(pid)
	if err != nil {
		return "", false, err
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true, nil
		}
	}
	return "", false, nil
}

// Find returns the processes whose command line match accepts, in ascending pid order.
// Processes whose command line cannot be read are skipped.
func (r *Reader) Find(match func(cmdline []string) bool) ([]int, error) {
	all, err := r.all()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range all {
		args, err := p.CmdLine()
		if err == nil && match(args) {
			pids = append(pids, p.PID)
		}
	}
	return pids, nil
}

// Descendants returns every process below pid (its children, theirs, and so on), nearest
// first and in pid order within a generation; pid itself is not included. The tree comes
// from the parent field of each stat line, read one process at a time: a pid reused while
// the walk runs can make a loop, which the walk does not follow.
func (r *Reader) Descendants(pid int) ([]Proc, error) {
	all, err := r.all()
	if err != nil {
		return nil, err
	}
	children := map[int][]Proc{}
	for _, p := range all {
		st, err := p.Stat()
		if err != nil {
			continue // ended since the listing
		}
		children[st.PPID] = append(children[st.PPID], Proc{PID: st.PID, PPID: st.PPID, Comm: st.Comm, State: st.State})
	}
	var out []Proc
	seen := map[int]bool{pid: true}
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			if seen[c.PID] {
				continue
			}
			seen[c.PID] = true
			out = append(out, c)
			queue = append(queue, c.PID)
		}
	}
	return out, nil
}

// all lists the tree's processes in ascending pid order.
func (r *Reader) all() (procfs.Procs, error) {
	if r.err != nil {
		return nil, r.err
	}
	all, err := r.fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", r.root, err)
	}
	slices.SortFunc(all, func(a, b procfs.Proc) int { return a.PID - b.PID })
	return all, nil
}

func (r *Reader) proc(pid int) (procfs.Proc, error) {
	if r.err != nil {
		return procfs.Proc{}, r.err
	}
	p, err := r.fs.Proc(pid)
	if err != nil {
		return procfs.Proc{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return p, nil
}

// Maps reports whether process pid has a file mapped whose path contains name (its
// /proc/PID/maps): e.g. "libcuda.so" for a process that loaded the CUDA driver, which
// every process that holds a CUDA context has.
func (r *Reader) Maps(pid int, name string) (bool, error) {
	if r.err != nil {
		return false, r.err
	}
	f, err := os.Open(filepath.Join(r.root, strconv.Itoa(pid), "maps"))
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(name)) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// OpenFiles lists the paths process pid has open (the targets of /proc/PID/fd); sockets,
// pipes and deleted files come as the kernel names them ("socket:[123]").
func (r *Reader) OpenFiles(pid int) ([]string, error) {
	p, err := r.proc(pid)
	if err != nil {
		return nil, err
	}
	targets, err := p.FileDescriptorTargets()
	if err != nil {
		return nil, fmt.Errorf("process %d: open files: %w", pid, err)
	}
	return slices.DeleteFunc(targets, func(t string) bool { return t == "" }), nil
}
