package serverprof

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

// VLLMName is what a vLLM trace file name says. vLLM's workers export through torch's
// tensorboard_trace_handler, which names a file "{worker_name}.{time.time_ns()}.pt.trace.json",
// plus ".gz" when torch_profiler_use_gzip (the default). The worker name is, by version:
//
//   - "[{profile_prefix}_]dp{d}_pp{p}_tp{t}_dcp{c}_ep{e}_rank{g}" (get_worker_rank_suffix
//     in vllm/distributed/utils.py; "rank{g}" alone when the parallel state is not up;
//     older docs name "{prefix}_dp{d}_pp{p}_tp{t}"), every part optional but in that order;
//   - "{instance_id}-rank-{g}" (vllm/v1/worker/gpu_worker.py in the first
//     --profiler-config versions);
//   - "{hostname}_{pid}.async_llm" for the API process's CPU-only trace
//     (vllm/v1/engine/async_llm.py, unless ignore_frontend), which is no rank's.
type VLLMName struct {
	// Prefix is the profile_prefix (new names), the engine's instance id (Legacy) or
	// "{hostname}_{pid}" (Frontend); "" when the name has none.
	Prefix string
	// The parallel ranks; -1 where the name does not say.
	DP, PP, TP, DCP, EP, Rank int
	TimeNS                    int64 // torch's time.time_ns() at export
	Gzip                      bool
	Legacy                    bool // "{instance_id}-rank-{g}"
	Frontend                  bool // the API process's trace, not a rank's
}

// The parts of a new-style worker name, in the order vLLM writes them.
var vllmParts = [...]string{"dp", "pp", "tp", "dcp", "ep", "rank"}

var vllmLegacy = regexp.MustCompile(`^(.+)-rank-([0-9]{1,9})$`)

// ParseVLLMName reads a vLLM trace file name (a base name). ok is false for anything
// else, including a number too large to be a rank (over 2^30) or a time that is not one.
//
// A prefix that itself ends in a part that can precede the suffix ("run_tp3" before
// "rank5") is ambiguous: the part is read as the name's.
func ParseVLLMName(base string) (n VLLMName, ok bool) {
	n = VLLMName{DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: -1}
	rest, found := strings.CutSuffix(base, ".pt.trace.json.gz")
	if found {
		n.Gzip = true
	} else if rest, found = strings.CutSuffix(base, ".pt.trace.json"); !found {
		return n, false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 {
		return n, false
	}
	worker, ts := rest[:dot], rest[dot+1:]
	if !allDigits(ts, 19) {
		return n, false
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return n, false
	}
	n.TimeNS = t
	if host, found := strings.CutSuffix(worker, ".async_llm"); found {
		if host == "" {
			return n, false
		}
		n.Prefix, n.Frontend = host, true
		return n, true
	}
	if parseVLLMParts(worker, &n) {
		return n, true
	}
	if m := vllmLegacy.FindStringSubmatch(worker); m != nil {
		r, _ := strconv.Atoi(m[2])
		if r > 1<<30 {
			return n, false
		}
		n.Prefix, n.Rank, n.Legacy = m[1], r, true
		return n, true
	}
	return n, false
}

// parseVLLMParts reads "[prefix_]dp0_pp0_tp1_dcp0_ep0_rank1" from the right: parts in
// vLLM's order, then whatever is left is the prefix.
func parseVLLMParts(worker string, n *VLLMName) bool {
	tokens := strings.Split(worker, "_")
	next := len(vllmParts) // only parts earlier than this one may come before
	j := len(tokens) - 1
	for ; j >= 0; j-- {
		i, v, ok := vllmPart(tokens[j])
		if !ok || i >= next {
			break
		}
		*n.part(i) = v
		next = i
	}
	if next == len(vllmParts) || (n.TP < 0 && n.Rank < 0) {
		*n = VLLMName{DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: -1, TimeNS: n.TimeNS, Gzip: n.Gzip}
		return false
	}
	if j >= 0 {
		n.Prefix = strings.Join(tokens[:j+1], "_")
		if n.Prefix == "" {
			*n = VLLMName{DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: -1, TimeNS: n.TimeNS, Gzip: n.Gzip}
			return false
		}
	}
	return true
}

// vllmPart reads one "tp3"-like token: its index in vllmParts and its number.
func vllmPart(tok string) (int, int, bool) {
	for i, p := range vllmParts {
		if digits, found := strings.CutPrefix(tok, p); found && allDigits(digits, 9) {
			v, _ := strconv.Atoi(digits)
			if v > 1<<30 {
				return 0, 0, false
			}
			return i, v, true
		}
	}
	return 0, 0, false
}

func (n *VLLMName) part(i int) *int {
	return [...]*int{&n.DP, &n.PP, &n.TP, &n.DCP, &n.EP, &n.Rank}[i]
}

func allDigits(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String is the file name vLLM writes for n.
func (n VLLMName) String() string {
	var worker string
	switch {
	case n.Frontend:
		worker = n.Prefix + ".async_llm"
	case n.Legacy:
		worker = n.Prefix + "-rank-" + strconv.Itoa(n.Rank)
	default:
		var parts []string
		if n.Prefix != "" {
			parts = append(parts, n.Prefix)
		}
		for i, p := range vllmParts {
			if v := *n.part(i); v >= 0 {
				parts = append(parts, p+strconv.Itoa(v))
			}
		}
		worker = strings.Join(parts, "_")
	}
	s := worker + "." + strconv.FormatInt(n.TimeNS, 10) + ".pt.trace.json"
	if n.Gzip {
		s += ".gz"
	}
	return s
}

// RankFile is n as torchprof's merge and analysis take it.
func (n VLLMName) RankFile(path string) torchprof.RankFile {
	return torchprof.RankFile{Path: path, Framework: torchprof.FrameworkVLLM, Prefix: n.Prefix,
		ProfileID: strconv.FormatInt(n.TimeNS, 10), TP: n.TP, DP: n.DP, PP: n.PP, EP: n.EP, DCP: n.DCP, Rank: n.Rank}
}

// FileKind says what a file in a window's dir is.
type FileKind string

const (
	RankTrace     FileKind = "rank"     // one rank's torch-profiler trace
	MergedTrace   FileKind = "merged"   // SGLang's merged-{profile_id}.trace.json[.gz]
	FrontendTrace FileKind = "frontend" // vLLM's API-process CPU trace
	OtherFile     FileKind = "other"    // memory snapshots, profiler tables, SGLang's by-stage part files, ...
)

// rankAnywhere finds "rank3", "rank_3", "rank-3" in a JSON trace name whose writer is
// not known by name (trtllm-serve's file names were not verified in its code).
var rankAnywhere = regexp.MustCompile(`(?:^|[-_.])rank[-_]?([0-9]{1,9})(?:[-_.]|$)`)

// Classify tells what a file is by its name alone: SGLang's per-rank names through
// torchprof.ParseName, vLLM's through ParseVLLMName, then any JSON trace whose name
// carries a rank. The RankFile is set for a RankTrace.
func Classify(path string) (FileKind, torchprof.RankFile) {
	base := filepath.Base(path)
	if strings.HasPrefix(base, "merged-") && (strings.HasSuffix(base, ".trace.json.gz") || strings.HasSuffix(base, ".trace.json")) {
		return MergedTrace, torchprof.RankFile{}
	}
	if n, ok := ParseVLLMName(base); ok {
		if n.Frontend {
			return FrontendTrace, torchprof.RankFile{}
		}
		return RankTrace, n.RankFile(path)
	}
	if rf, ok := torchprof.ParseName(path); ok && rf.Framework == torchprof.FrameworkSGLang {
		return RankTrace, rf
	}
	stem, found := strings.CutSuffix(base, ".json.gz")
	if !found {
		stem, found = strings.CutSuffix(base, ".json")
	}
	if found {
		if m := rankAnywhere.FindStringSubmatch(stem); m != nil {
			if r, err := strconv.Atoi(m[1]); err == nil && r <= 1<<30 {
				return RankTrace, torchprof.RankFile{Path: path, TP: -1, DP: -1, PP: -1, EP: -1, DCP: -1, Rank: r}
			}
		}
	}
	return OtherFile, torchprof.RankFile{}
}
