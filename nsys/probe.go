package nsys

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// EnvNsys names the environment variable that points at the nsys binary to use.
const EnvNsys = "NSYS_AGENT_NSYS"

// knownPaths are install locations tried after NSYS_AGENT_NSYS and PATH (globs).
var knownPaths = []string{
	"/usr/lib/nsight-systems/bin/nsys",
	"/opt/nvidia/nsight-systems/*/target-linux-x64/nsys",
	"/opt/nvidia/nsight-systems/*/bin/nsys",
	"/usr/local/cuda/bin/nsys",
	"/usr/local/cuda/nsight-systems-*/bin/nsys",
	"/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
}

// Locate finds the nsys binary: explicit path, then $NSYS_AGENT_NSYS, then PATH, then
// known install directories.
func Locate(explicit string) (string, error) {
	var looked []string
	try := func(p string) (string, bool) {
		looked = append(looked, p)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", false
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return p, true
		}
		return abs, true
	}
	if explicit != "" {
		if p, ok := try(explicit); ok {
			return p, nil
		}
		return "", &NotInstalledError{Looked: looked}
	}
	if env := os.Getenv(EnvNsys); env != "" {
		if p, ok := try(env); ok {
			return p, nil
		}
		return "", &NotInstalledError{Looked: []string{EnvNsys + "=" + env}}
	}
	looked = append(looked, "PATH")
	if p, err := exec.LookPath("nsys"); err == nil {
		return filepath.Abs(p)
	}
	for _, g := range knownPaths {
		matches, _ := filepath.Glob(g)
		if len(matches) == 0 {
			looked = append(looked, g)
		}
		// Newest version directory last in lexical order; prefer it.
		for i := len(matches) - 1; i >= 0; i-- {
			if p, ok := try(matches[i]); ok {
				return p, nil
			}
		}
	}
	return "", &NotInstalledError{Looked: looked}
}

// LocateImporter finds QdstrmImporter for an nsys binary. Packagers link nsys through
// several symlinks and put the importer in a host-* directory beside the target-*
// directory of one of the links (Debian: /usr/lib/nsight-systems/host-linux-x64; the
// Nsight Compute bundle: host/linux-desktop-glibc_2_11_3-x64). Returns "" if none.
func LocateImporter(nsysPath string) string {
	p := nsysPath
	var roots []string
	for i := 0; i < 6; i++ {
		roots = append(roots, filepath.Dir(filepath.Dir(p)))
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	for _, root := range roots {
		for _, pat := range []string{"host-*/QdstrmImporter", "host/*/QdstrmImporter", "*/QdstrmImporter"} {
			matches, _ := filepath.Glob(filepath.Join(root, pat))
			for _, m := range matches {
				if st, err := os.Stat(m); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
					return m
				}
			}
		}
	}
	return ""
}

// Info is what probing an nsys binary found.
type Info struct {
	Path     string `json:"path"`
	Version  string `json:"version"`
	Importer string `json:"importer,omitempty"`
	Caps     Caps   `json:"capabilities"`
}

// Caps are features detected from --help output, never from version numbers.
type Caps struct {
	// StartLater: `nsys profile --start-later` exists (2025.x; not 2022.4).
	StartLater bool `json:"start_later"`
	// LaunchOptions: long options `nsys launch` accepts (deprecated ones excluded).
	LaunchOptions map[string]bool `json:"launch_options"`
	// StartOptions: long options `nsys start` accepts.
	StartOptions map[string]bool `json:"start_options"`
	// CaptureRangeEnd: `--capture-range-end` exists (repeat ranges for cuda-profiler).
	CaptureRangeEnd bool `json:"capture_range_end"`
	// NewStatsNames: stats reports use the 2023.1+ names (cuda_gpu_kern_sum).
	NewStatsNames bool `json:"new_stats_names"`
	// SessionsListHeaderFlag: `sessions list -p/--show-header` exists.
	SessionsListHeaderFlag bool `json:"sessions_list_header_flag"`
	// SessionsListJSON: `sessions list -f json` exists (not on 2022.4 or 2025.3.1).
	SessionsListJSON bool `json:"sessions_list_json"`
}

// KernelSumReport is the `nsys stats` report name for the GPU kernel summary.
func (c Caps) KernelSumReport() string {
	if c.NewStatsNames {
		return "cuda_gpu_kern_sum"
	}
	return "gpukernsum"
}

// LaunchAccepts reports whether `nsys launch` accepts a long option (e.g. "--sample").
func (c Caps) LaunchAccepts(opt string) bool { return c.LaunchOptions[opt] }

// Probe runs the binary's --version and --help for the commands we use. It costs a few
// hundred milliseconds; the agent does it once at start.
func Probe(ctx context.Context, r Runner) (*Info, error) {
	info := &Info{Path: r.Binary(), Importer: LocateImporter(r.Binary())}
	run := func(args ...string) (string, error) {
		res, err := r.Run(ctx, Call{Args: args, Timeout: 30 * time.Second})
		if err != nil {
			return "", err
		}
		return res.Output(), nil
	}
	out, err := run("--version")
	if err != nil {
		return nil, err
	}
	version, ok := parseVersion(out)
	if !ok {
		return nil, fmt.Errorf("%s --version printed %q, not an nsys version; is it really nsys? %s", r.Binary(), oneLine(out, 200), InstallHint)
	}
	info.Version = version
	var h helpTexts
	for _, c := range []struct {
		out  *string
		args []string
	}{
		{&h.Profile, []string{"--help", "profile"}},
		{&h.Launch, []string{"--help", "launch"}},
		{&h.Start, []string{"--help", "start"}},
		{&h.Stats, []string{"--help", "stats"}},
		{&h.SessionsList, []string{"sessions", "list", "--help"}},
	} {
		if *c.out, err = run(c.args...); err != nil {
			return nil, err
		}
	}
	info.Caps = parseCaps(h)
	return info, nil
}
