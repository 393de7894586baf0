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

// optionLineRE matches an option's heading line in nsys --help output and takes its
// name apart: "\t-t, --trace=", "\t--session-new=", "\t(Deprecated) --cpuctxsw=",
// "\t-Y, --start-later=", "\t-q, --quiet", "\t--sqlite <file.sqlite>", and one heading
// for two options, "\t--nvtx-domain-[include|exclude]=" (2022.4.2 profile and launch).
// A name ends at '=', a space or the end of the line.
var optionLineRE = regexp.MustCompile(`^\s*(\(Deprecated\)\s*)?(?:-[A-Za-z], )?--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?:-\[([a-z0-9|-]+)\])?(?:[=\s]|$)`)

var optionWordsRE = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)

// headingOptions returns the long options a heading line names (none if it is not one),
// and whether the heading marks them deprecated.
func headingOptions(line string) (names []string, deprecated bool) {
	m := optionLineRE.FindStringSubmatch(line)
	if m == nil {
		return nil, false
	}
	if m[3] == "" {
		return []string{"--" + m[2]}, m[1] != ""
	}
	for _, alt := range strings.Split(m[3], "|") {
		if optionWordsRE.MatchString(alt) {
			names = append(names, "--"+m[2]+"-"+alt)
		}
	}
	return names, m[1] != ""
}

// helpOptions returns the long options a --help text lists, leaving out those marked
// (Deprecated) or "no longer supported" (2022.4 `launch` lists --sample that way and
// refuses it).
func helpOptions(help string) map[string]bool {
	opts := map[string]bool{}
	lines := strings.Split(help, "\n")
	for i, line := range lines {
		names, deprecated := headingOptions(line)
		if names == nil {
			continue
		}
		// The warning follows within a few lines, inside this option's block: a heading
		// with no description must not take the next option's warning (found by
		// FuzzHelpOptions: "--a" then a deprecated option read --a as deprecated).
		for j := i + 1; j < len(lines) && j < i+4 && !optionLineRE.MatchString(lines[j]); j++ {
			if strings.Contains(lines[j], "no longer supported") {
				deprecated = true
			}
		}
		if !deprecated {
			for _, n := range names {
				opts[n] = true
			}
		}
	}
	return opts
}
