package nsys

// Reading nsys --help output. Features are detected from what the help lists, never from
// version numbers (DESIGN.md): Debian's 2022.4.2 and the GPU machine's 2025.3.1 differ in
// ways no version comparison would predict. Real outputs: testdata/help/.

import (
	"regexp"
	"strings"
)

var versionRE = regexp.MustCompile(`(\d{4}\.\d+\.\d+(?:\.\d+)?)`)

// parseVersion finds the version in `nsys --version` output ("NVIDIA Nsight Systems
// version 2022.4.2.1-df9881f" -> "2022.4.2.1").
func parseVersion(out string) (string, bool) {
	v := versionRE.FindString(out)
	return v, v != ""
}

// helpTexts is what Probe reads: the --help output of each nsys command it uses.
type helpTexts struct {
	Profile      string // nsys --help profile
	Launch       string // nsys --help launch
	Start        string // nsys --help start
	Stats        string // nsys --help stats
	SessionsList string // nsys sessions list --help
}

var formatFlagRE = regexp.MustCompile(`(?m)^\s*-f, --format`)

// parseCaps derives the capabilities from the help texts.
func parseCaps(h helpTexts) Caps {
	po := helpOptions(h.Profile)
	return Caps{
		StartLater:             po["--start-later"],
		CaptureRangeEnd:        po["--capture-range-end"],
		LaunchOptions:          helpOptions(h.Launch),
		StartOptions:           helpOptions(h.Start),
		NewStatsNames:          strings.Contains(h.Stats, "cuda_gpu_kern_sum"),
		SessionsListHeaderFlag: strings.Contains(h.SessionsList, "--show-header"),
		SessionsListJSON:       formatFlagRE.MatchString(h.SessionsList),
	}
}

// optionLineRE matches an option's heading line in nsys --help output:
// "\t-t, --trace=", "\t--session-new=", "\t(Deprecated) --cpuctxsw=", "\t-Y, --start-later=".
var optionLineRE = regexp.MustCompile(`^\s*(\(Deprecated\)\s*)?(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)`)

// helpOptions returns the long options a --help text lists, leaving out those marked
// (Deprecated) or "no longer supported" (2022.4 `launch` lists --sample that way and
// refuses it).
func helpOptions(help string) map[string]bool {
	opts := map[string]bool{}
	lines := strings.Split(help, "\n")
	for i, line := range lines {
		m := optionLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		deprecated := m[1] != ""
		for j := i + 1; j < len(lines) && j < i+4; j++ {
			if strings.Contains(lines[j], "no longer supported") {
				deprecated = true
			}
		}
		if !deprecated {
			opts[m[2]] = true
		}
	}
	return opts
}
