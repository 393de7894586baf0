package torchprof

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Framework names the server that wrote a trace file, as told by its file name.
const (
	FrameworkSGLang = "sglang"
	FrameworkVLLM   = "vllm"
)

// RankFile is one per-rank trace file and the parallel ranks its name encodes. A rank
// dimension the name does not mention is -1.
type RankFile struct {
	Path      string `json:"path"`
	Framework string `json:"framework,omitempty"` // FrameworkSGLang, FrameworkVLLM, or "" when the name is not recognised
	Prefix    string `json:"prefix,omitempty"`    // the profile_prefix, if any
	ProfileID string `json:"profile_id,omitempty"`
	Stage     string `json:"stage,omitempty"` // SGLang's EXTEND or DECODE when profiling by stage
	TP        int    `json:"tp"`
	DP        int    `json:"dp"`
	PP        int    `json:"pp"`
	EP        int    `json:"ep"`
	DCP       int    `json:"dcp"`
	Rank      int    `json:"rank"` // vLLM's global rank
	// Host is the machine the file comes from (a pulled group folder's host folder,
	// gpu-1_7477); "" when unknown. Ranks of several hosts get host-qualified labels.
	Host string `json:"host,omitempty"`
	// HostOffsetNs is that host's wall clock minus the coordinator's (a group member's
	// OffsetNs), valid when HostOffsetKnown: merge and analyze subtract it to put the
	// host's timestamps on the coordinator's clock (clock.go).
	HostOffsetNs    int64 `json:"host_offset_ns,omitempty"`
	HostOffsetKnown bool  `json:"host_offset_known,omitempty"`
	// Index orders files the name says nothing about; Label uses it.
	Index int `json:"-"`
}

var (
	// [{prefix}-]{profile_id}-TP-{tp}[-DP-{dp}][-PP-{pp}][-EP-{ep}][-EXTEND|-DECODE].trace.json[.gz]
	sglangName = regexp.MustCompile(`^(?:(.*)-)?([^-]+)-TP-(\d+)(?:-DP-(\d+))?(?:-PP-(\d+))?(?:-EP-(\d+))?(?:-(EXTEND|DECODE))?\.trace\.json(?:\.gz)?$`)
	// [{prefix}_]dp{d}_pp{p}_tp{t}_dcp{c}_ep{e}_rank{g}.{time_ns}.pt.trace.json[.gz]; the
	// set of parts varies across vLLM versions, so each one is optional.
	vllmName = regexp.MustCompile(`^(?:(.*?)_)??((?:(?:dp|pp|tp|dcp|ep|rank)\d+_)*(?:dp|pp|tp|dcp|ep|rank)\d+)\.(\d+)\.pt\.trace\.json(?:\.gz)?$`)
	vllmPart = regexp.MustCompile(`(dp|pp|tp|dcp|ep|rank)(\d+)`)
	// Older vLLM: {instance}-rank-{r}.{time_ns}.pt.trace.json[.gz]
	vllmOldName = regexp.MustCompile(`^(.*)-rank-(\d+)\.(\d+)\.pt\.trace\.json(?:\.gz)?$`)
)

// ParseName reads the ranks out of a per-rank trace file name (the base name of path).
// ok is false when the name is neither SGLang's nor vLLM's; the RankFile then has only
// Path set and every rank at -1.
func ParseName(path string) (rf RankFile, ok bool) {
	rf = RankFile{Path: path, TP: -1, DP: -1, PP: -1, EP: -1, DCP: -1, Rank: -1}
	base := filepath.Base(path)
	if strings.HasPrefix(base, "merged-") {
		return rf, false
	}
	if m := sglangName.FindStringSubmatch(base); m != nil {
		rf.Framework = FrameworkSGLang
		rf.Prefix, rf.ProfileID, rf.Stage = m[1], m[2], m[7]
		rf.TP, rf.DP, rf.PP, rf.EP = atoiOr(m[3]), atoiOr(m[4]), atoiOr(m[5]), atoiOr(m[6])
		return rf, rf.TP >= 0
	}
	if m := vllmName.FindStringSubmatch(base); m != nil {
		rf.Framework = FrameworkVLLM
		rf.Prefix, rf.ProfileID = m[1], m[3]
		for _, p := range vllmPart.FindAllStringSubmatch(m[2], -1) {
			n := atoiOr(p[2])
			switch p[1] {
			case "dp":
				rf.DP = n
			case "pp":
				rf.PP = n
			case "tp":
				rf.TP = n
			case "dcp":
				rf.DCP = n
			case "ep":
				rf.EP = n
			case "rank":
				rf.Rank = n
			}
		}
		return rf, rf.TP >= 0 || rf.Rank >= 0
	}
	if m := vllmOldName.FindStringSubmatch(base); m != nil {
		rf.Framework = FrameworkVLLM
		rf.Prefix, rf.ProfileID = m[1], m[3]
		rf.Rank = atoiOr(m[2])
		return rf, rf.Rank >= 0
	}
	return rf, false
}

// atoiOr parses a decimal rank, -1 when absent or out of range.
func atoiOr(s string) int {
	if s == "" {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 1<<30 {
		return -1
	}
	return n
}

// Label is the pid prefix Merge gives this rank's events, in SGLang's format: "[TP00]",
// "[TP01-DP02]" (parts in tp, dp, pp, ep order, two digits, only those the name has).
// vLLM names always have every part; zero DP, PP and EP are left out there to keep labels
// short. Old vLLM names give "[RANK03]"; unrecognised names "[F00]" by position.
func (rf RankFile) Label() string {
	var parts []string
	add := func(name string, v int, always bool) {
		if v >= 0 && (always || rf.Framework != FrameworkVLLM || v > 0) {
			parts = append(parts, fmt.Sprintf("%s%02d", name, v))
		}
	}
	add("TP", rf.TP, true)
	add("DP", rf.DP, false)
	add("PP", rf.PP, false)
	add("EP", rf.EP, false)
	if len(parts) == 0 && rf.Rank >= 0 {
		parts = append(parts, fmt.Sprintf("RANK%02d", rf.Rank))
	}
	if len(parts) == 0 {
		if rf.Framework == FrameworkSGLang {
			return "[Unknown]"
		}
		parts = append(parts, fmt.Sprintf("F%02d", rf.Index))
	}
	return "[" + strings.Join(parts, "-") + "]"
}

// sortIndex is SGLang's process_sort_index for a device track of this rank.
func (rf RankFile) sortIndex(pid int64) int64 {
	z := func(v int) int64 { return int64(max(v, 0)) }
	return z(rf.DP)*100000000 + z(rf.EP)*1000000 + z(rf.PP)*10000 + z(rf.TP)*100 + pid
}

// group is what files of one capture share: vLLM ranks stamp their own time, so only
// the prefix groups them.
func (rf RankFile) group() string {
	if rf.Framework == FrameworkVLLM {
		return "vllm:" + rf.Prefix
	}
	return rf.Framework + ":" + rf.Prefix + "\x00" + rf.ProfileID + "\x00" + rf.Stage
}

// SortRankFiles orders files the way SGLang does: by (DP, EP, PP, TP), then by global
// rank and path so the order is total.
func SortRankFiles(files []RankFile) {
	key := func(rf RankFile) [6]int {
		z := func(v int) int { return max(v, 0) }
		return [6]int{z(rf.DP), z(rf.EP), z(rf.PP), z(rf.TP), z(rf.Rank), rf.Index}
	}
	slices.SortStableFunc(files, func(a, b RankFile) int {
		ka, kb := key(a), key(b)
		return cmp.Or(slices.Compare(ka[:], kb[:]), strings.Compare(a.Path, b.Path))
	})
}

// Discover finds the per-rank Kineto traces of one capture in dir: SGLang's
// "...-TP-N....trace.json.gz" (with or without a profile_prefix, never its own merged-*
// output) and vLLM's "...rankN.<ns>.pt.trace.json.gz". It fails when dir holds several
// captures (profile ids, stages or prefixes), because merging those would mix unrelated
// timelines: pass the files of one capture explicitly instead.
func Discover(dir string) ([]RankFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("discover traces: %w", err)
	}
	groups := map[string][]RankFile{}
	var order []string
	for _, e := range entries {
		rf, ok := ParseName(filepath.Join(dir, e.Name()))
		if !ok {
			continue
		}
		// Named like a trace but a FIFO, device or directory: refuse it now rather than
		// block on it later or silently lose a rank.
		if !e.Type().IsRegular() {
			if _, err := checkRegular(rf.Path); err != nil {
				return nil, fmt.Errorf("discover traces: %w", err)
			}
		}
		g := rf.group()
		if _, seen := groups[g]; !seen {
			order = append(order, g)
		}
		groups[g] = append(groups[g], rf)
	}
	switch len(order) {
	case 0:
		return nil, fmt.Errorf("discover traces: no SGLang or vLLM per-rank trace (*.trace.json.gz) in %s", dir)
	case 1:
	default:
		var names []string
		for _, g := range order {
			names = append(names, filepath.Base(groups[g][0].Path))
		}
		slices.Sort(names)
		return nil, fmt.Errorf("discover traces: %s holds %d captures (for example %s); pass the files of one capture explicitly",
			dir, len(order), strings.Join(names, ", "))
	}
	files := groups[order[0]]
	SortRankFiles(files)
	for i := 1; i < len(files); i++ {
		if files[i].Label() == files[i-1].Label() {
			return nil, fmt.Errorf("discover traces: %s and %s are the same rank %s; pass the files of one capture explicitly",
				files[i-1].Path, files[i].Path, files[i].Label())
		}
	}
	return files, nil
}

// RankFilesFromPaths names explicitly given files: recognised names get their ranks,
// others a position (Label "[F00]", "[F01]", ...).
func RankFilesFromPaths(paths []string) []RankFile {
	files := make([]RankFile, 0, len(paths))
	for i, p := range paths {
		rf, _ := ParseName(p)
		rf.Index = i
		files = append(files, rf)
	}
	SortRankFiles(files)
	return files
}
