package torchprof

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Summary is where each rank's GPU time went in one capture and which rank is slow. It
// is small enough to live in a window manifest.
type Summary struct {
	Source string        `json:"source"` // "kineto" or "nsys-sqlite"
	Inputs []string      `json:"inputs"`
	Ranks  []RankSummary `json:"ranks"`
	// SlowestRank has the most compute (kernel time outside communication): in a
	// collective, the fast ranks wait for it inside communication kernels, so their
	// total busy time hides who is late.
	SlowestRank string `json:"slowest_rank,omitempty"`
	FastestRank string `json:"fastest_rank,omitempty"`
	// Imbalance is the slowest rank's compute over the fastest's; 1 is balanced.
	Imbalance float64 `json:"imbalance"`
	Reason    string  `json:"reason,omitempty"`
	// Kernels are the kernels with the most time over all ranks, with per-rank totals.
	Kernels []KernelAcrossRanks `json:"kernels"`
	// StartNs and EndNs bound every rank's GPU activity (Kineto: on the common clock of
	// clock.go; nsys: the report's); the timeline bins of every rank split this range
	// evenly.
	StartNs int64 `json:"start_ns"`
	EndNs   int64 `json:"end_ns"`
	// Warnings count the malformed events the readers skipped, per input and kind.
	Warnings []Warning `json:"warnings,omitempty"`
	// UnalignedHosts, for ranks of several hosts, lists the hosts whose clock offset is
	// unknown: their ranks' times (steps, timeline) are on their own clock, not the
	// coordinator's. The per-rank totals do not depend on it.
	UnalignedHosts []string `json:"unaligned_hosts,omitempty"`
}

// RankSummary is one rank's GPU time.
type RankSummary struct {
	Label     string       `json:"label"`
	Host      string       `json:"host,omitempty"`  // set when the ranks come from several hosts
	Input     string       `json:"input,omitempty"` // file (Kineto) or process name (nsys)
	Pid       int          `json:"pid,omitempty"`
	Kernels   int64        `json:"kernels"`    // kernel launches
	KernelNs  int64        `json:"kernel_ns"`  // sum of kernel durations
	BusyNs    int64        `json:"busy_ns"`    // time any kernel, memcpy or memset ran (union over streams)
	CommNs    int64        `json:"comm_ns"`    // sum of communication kernel durations (NCCL, custom all-reduce)
	ComputeNs int64        `json:"compute_ns"` // KernelNs - CommNs
	SpanNs    int64        `json:"span_ns"`    // first GPU activity to last
	Top       []KernelStat `json:"top_kernels"`
	Steps     []Step       `json:"steps,omitempty"` // annotated steps (NVTX ranges, profiler steps), the first 500
	StepCount int          `json:"step_count"`      // all of them
	// TimelineBusy and TimelineComm are, per bin of [StartNs, EndNs), the fraction of
	// time this rank's GPU was busy and busy communicating.
	TimelineBusy []float64 `json:"timeline_busy,omitempty"`
	TimelineComm []float64 `json:"timeline_comm,omitempty"`
}

// KernelStat is one kernel name on one rank.
type KernelStat struct {
	Name    string  `json:"name"`
	Count   int64   `json:"count"`
	TotalNs int64   `json:"total_ns"`
	MeanNs  int64   `json:"mean_ns"`
	Share   float64 `json:"share"` // of this rank's kernel time
	Comm    bool    `json:"comm,omitempty"`
}

// KernelAcrossRanks compares one kernel across ranks.
type KernelAcrossRanks struct {
	Name    string  `json:"name"`
	Comm    bool    `json:"comm,omitempty"`
	TotalNs []int64 `json:"total_ns"` // per rank, in Ranks order
	Count   []int64 `json:"count"`
	MaxRank string  `json:"max_rank"`
	MinRank string  `json:"min_rank"`
	Ranks   int     `json:"ranks"` // how many ranks ran it
	// Ratio is the largest rank total over the smallest among ranks that ran the kernel.
	Ratio float64 `json:"ratio"`
}

// Step is one annotated range.
type Step struct {
	Name    string `json:"name"`
	StartNs int64  `json:"start_ns"`
	EndNs   int64  `json:"end_ns"`
}

const (
	topKernelsPerRank = 10
	kernelsAcross     = 15
	timelineBins      = 120
	maxSteps          = 500
)

// IsCommKernel tells communication kernels: NCCL's, and the custom all-reduce kernels
// of SGLang and vLLM (cross_device_reduce_*), which fast ranks spend waiting in.
func IsCommKernel(name string) bool {
	n := strings.TrimPrefix(name, "void ")
	if strings.HasPrefix(n, "nccl") {
		return true
	}
	l := strings.ToLower(n)
	return slices.ContainsFunc(commNameParts, func(part string) bool { return strings.Contains(l, part) })
}

var commNameParts = []string{"cross_device_reduce", "all_reduce", "allreduce", "all_gather", "allgather",
	"reduce_scatter", "reducescatter", "all_to_all", "alltoall"}

// rankData collects one rank's GPU activity while a trace is read. Nothing in it grows
// with the number of kernels: per kernel name (at most maxKernelNames) a count and a
// total, the first maxSteps steps, and the intervals for the busy union in an
// intervalSorter (its own for a Kineto rank; the nsys reader shares one among ranks).
type rankData struct {
	label, input string
	pid          int
	kernels      map[string]*kernelAcc
	steps        []Step
	stepsCPU     []Step // CPU-side annotations, used when there are no GPU ones
	nSteps       int
	nStepsCPU    int
	// first and last bound the rank's GPU activity (first > last when there is none).
	first, last int64
	ivs         intervalSorter // Kineto: every kernel, memcpy and memset of the rank
	shift       int64          // added to ivs' timestamps when read back
	busy, comm  *unionBins     // set by summarize's fill
	problems    problems       // malformed events skipped
	nameBytes   int            // of the keys of kernels
}

// step keeps the first maxSteps annotations and counts them all.
func addStep(steps *[]Step, n *int, st Step) {
	*n++
	if len(*steps) < maxSteps {
		*steps = append(*steps, st)
	}
}

type kernelAcc struct {
	count, total int64
	comm         bool
}

func newRankData(label, input string) *rankData {
	return &rankData{label: label, input: input, kernels: map[string]*kernelAcc{}, first: math.MaxInt64, last: math.MinInt64}
}

// A rank keeps per-name figures for at most maxKernelNames names of maxKernelNameBytes
// in all; kernels with further names (only a hostile trace has so many: real ones have
// hundreds to a few thousand) count as otherKernels or otherCommKernels.
const (
	maxKernelNames     = 1 << 16
	maxKernelNameBytes = 64 << 20
	otherKernels       = "(other kernels)"
	otherCommKernels   = "(other communication kernels)"
)

// kernel counts n launches of name taking total ns; name is only copied the first time
// it is seen. folded says the name was one too many and went to a catch-all.
func (d *rankData) kernel(name []byte, n, total int64) (k *kernelAcc, folded bool) {
	k = d.kernels[string(name)]
	if k == nil {
		s := string(name)
		comm := IsCommKernel(s)
		if len(d.kernels) >= maxKernelNames || d.nameBytes+len(s) > maxKernelNameBytes {
			s, folded = otherKernels, true
			if comm {
				s = otherCommKernels
			}
			if k = d.kernels[s]; k != nil {
				k.count += n
				k.total += total
				return k, true
			}
		}
		k = &kernelAcc{comm: comm}
		d.kernels[s] = k
		d.nameBytes += len(s)
	}
	k.count += n
	k.total += total
	return k, folded
}

// activity widens the rank's range of GPU activity.
func (d *rankData) activity(start, end int64) {
	d.first = min(d.first, start)
	d.last = max(d.last, end)
}

func (d *rankData) active() bool { return d.first <= d.last }

// summarize turns the collected ranks into a Summary; ranks keep their order. fill must
// compute every rank's busy and comm unions for the timeline bins of [start, end), the
// range of all ranks.
func summarize(source string, inputs []string, ranks []*rankData, fill func(start, end int64) error) (*Summary, error) {
	s := &Summary{Source: source, Inputs: inputs, StartNs: math.MaxInt64, EndNs: math.MinInt64}
	for _, d := range ranks {
		if d.active() {
			s.StartNs = min(s.StartNs, d.first)
			s.EndNs = max(s.EndNs, d.last)
		}
	}
	if s.StartNs > s.EndNs {
		s.StartNs, s.EndNs = 0, 0
	}
	for _, d := range ranks {
		d.busy, d.comm = newUnionBins(s.StartNs, s.EndNs), newUnionBins(s.StartNs, s.EndNs)
	}
	if err := fill(s.StartNs, s.EndNs); err != nil {
		return nil, err
	}
	for _, d := range ranks {
		s.Ranks = append(s.Ranks, d.summary())
	}
	s.compare(ranks)
	return s, nil
}

func (d *rankData) summary() RankSummary {
	r := RankSummary{Label: d.label, Input: d.input, Pid: d.pid}
	var all []KernelStat
	for name, k := range d.kernels {
		r.Kernels += k.count
		r.KernelNs += k.total
		if k.comm {
			r.CommNs += k.total
		}
		all = append(all, KernelStat{Name: name, Count: k.count, TotalNs: k.total, MeanNs: k.total / k.count, Comm: k.comm})
	}
	r.ComputeNs = r.KernelNs - r.CommNs
	slices.SortFunc(all, func(a, b KernelStat) int {
		return cmp.Or(cmp.Compare(b.TotalNs, a.TotalNs), strings.Compare(a.Name, b.Name)) // most time first
	})
	for _, k := range all[:min(len(all), topKernelsPerRank)] {
		if r.KernelNs > 0 {
			k.Share = round3(float64(k.TotalNs) / float64(r.KernelNs))
		}
		r.Top = append(r.Top, k)
	}
	r.BusyNs, r.TimelineBusy = d.busy.result()
	_, r.TimelineComm = d.comm.result()
	if d.active() {
		r.SpanNs = d.last - d.first
	}
	r.Steps, r.StepCount = d.steps, d.nSteps
	if len(r.Steps) == 0 {
		r.Steps, r.StepCount = d.stepsCPU, d.nStepsCPU
	}
	slices.SortStableFunc(r.Steps, func(a, b Step) int { return cmp.Compare(a.StartNs, b.StartNs) })
	return r
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// compare fills the cross-rank fields.
func (s *Summary) compare(ranks []*rankData) {
	if len(s.Ranks) == 0 {
		return
	}
	slow, fast := 0, 0
	for i, r := range s.Ranks {
		if r.ComputeNs > s.Ranks[slow].ComputeNs {
			slow = i
		}
		if r.ComputeNs < s.Ranks[fast].ComputeNs {
			fast = i
		}
	}
	s.SlowestRank, s.FastestRank = s.Ranks[slow].Label, s.Ranks[fast].Label
	if f := s.Ranks[fast].ComputeNs; f > 0 {
		s.Imbalance = round3(float64(s.Ranks[slow].ComputeNs) / float64(f))
	}

	totals := map[string]int64{}
	for _, d := range ranks {
		for name, k := range d.kernels {
			totals[name] += k.total
		}
	}
	names := slices.Collect(maps.Keys(totals))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(totals[b], totals[a]), strings.Compare(a, b)) // most time first
	})
	for _, name := range names[:min(len(names), kernelsAcross)] {
		k := KernelAcrossRanks{Name: name}
		mx, mn := -1, -1
		for i, d := range ranks {
			var t, c int64
			if a := d.kernels[name]; a != nil {
				t, c = a.total, a.count
			}
			k.TotalNs = append(k.TotalNs, t)
			k.Count = append(k.Count, c)
			if c == 0 {
				continue
			}
			k.Comm = d.kernels[name].comm // IsCommKernel(name), or a catch-all's
			k.Ranks++
			if mx < 0 || t > k.TotalNs[mx] {
				mx = i
			}
			if mn < 0 || t < k.TotalNs[mn] {
				mn = i
			}
		}
		k.MaxRank, k.MinRank = s.Ranks[mx].Label, s.Ranks[mn].Label
		if k.TotalNs[mn] > 0 {
			k.Ratio = round3(float64(k.TotalNs[mx]) / float64(k.TotalNs[mn]))
		}
		s.Kernels = append(s.Kernels, k)
	}
	s.Reason = s.reason(ranks, slow, fast)
}

// reason says in one sentence why the slowest rank is slow.
func (s *Summary) reason(ranks []*rankData, slow, fast int) string {
	if len(s.Ranks) < 2 || slow == fast {
		return ""
	}
	S, F := s.Ranks[slow], s.Ranks[fast]
	msg := fmt.Sprintf("%s computes %s on the GPU, %s more than %s (%.2f×)",
		S.Label, ms(S.ComputeNs), ms(S.ComputeNs-F.ComputeNs), F.Label, s.Imbalance)
	var best string
	var bestD int64
	for name, k := range ranks[slow].kernels {
		if k.comm {
			continue
		}
		var f int64
		if a := ranks[fast].kernels[name]; a != nil {
			f = a.total
		}
		if d := k.total - f; d > bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best != "" {
		msg += fmt.Sprintf("; most of the difference is %s (+%s)", shortName(best, 80), ms(bestD))
	}
	if F.CommNs > S.CommNs {
		msg += fmt.Sprintf("; meanwhile %s waits %s longer in communication kernels", F.Label, ms(F.CommNs-S.CommNs))
	}
	return msg
}

func ms(ns int64) string { return fmt.Sprintf("%.3f ms", float64(ns)/1e6) }

// shortName keeps a kernel name readable: no return type, at most n runes.
func shortName(name string, n int) string {
	name = strings.TrimPrefix(name, "void ")
	if r := []rune(name); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return name
}

// Compact is the summary without per-step and timeline detail: what a window manifest
// carries (the full summary stays in summary.json and summary.html).
func (s *Summary) Compact() *Summary {
	c := *s
	c.Ranks = make([]RankSummary, len(s.Ranks))
	for i, r := range s.Ranks {
		r.Steps, r.TimelineBusy, r.TimelineComm = nil, nil, nil
		c.Ranks[i] = r
	}
	return &c
}
