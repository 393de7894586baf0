package torchprof

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
)

// AnalyzeKineto reads per-rank Kineto traces (streaming, ranks in parallel) and says
// where each rank's GPU time went. Kernels are events of category "kernel"; busy time
// also counts gpu_memcpy and gpu_memset. Ranks keep the order of files. Memory does not
// grow with the number of kernels (see intervalSorter); large ranks use about 6 bytes a
// kernel of temporary disk in $TMPDIR. Ranks of several hosts are labelled with their
// host (Labels) and placed on the coordinator's clock where their host's offset is known.
func AnalyzeKineto(ctx context.Context, files []RankFile) (*Summary, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("analyze: no trace files")
	}
	labels := Labels(files)
	ranks := make([]*rankData, len(files))
	defer func() {
		for _, d := range ranks {
			if d != nil {
				d.ivs.close()
			}
		}
	}()
	errs := make([]error, len(files))
	parallel(len(files), func(i int) { ranks[i], errs[i] = analyzeKinetoFile(ctx, files[i], labels[i]) })
	inputs := make([]string, len(files))
	for i, rf := range files {
		if errs[i] != nil {
			return nil, errs[i]
		}
		inputs[i] = rf.Path
	}
	s, err := summarize("kineto", inputs, ranks, func(start, end int64) error {
		errs := make([]error, len(ranks))
		parallel(len(ranks), func(i int) { errs[i] = mergeUnions(ctx, &ranks[i].ivs, ranks[i:i+1]) })
		for i, err := range errs {
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("analyze: %s: %w", files[i].Path, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, d := range ranks {
		s.Warnings = append(s.Warnings, d.problems.warnings(files[i].Path, "skipped")...)
	}
	if multiHost(files) {
		for i, rf := range files {
			s.Ranks[i].Host = rf.Host
		}
		s.UnalignedHosts = UnalignedHosts(files)
	}
	return s, nil
}

// mergeUnions feeds the sorted intervals of s, shifted onto the common clock, to the
// busy and comm unions of their ranks (interval.rank indexes ranks), and frees s.
func mergeUnions(ctx context.Context, s *intervalSorter, ranks []*rankData) error {
	defer s.close()
	return s.each(ctx, func(iv interval) {
		d := ranks[iv.rank]
		iv.start += d.shift
		iv.end += d.shift
		d.busy.add(iv.start, iv.end)
		if iv.comm {
			d.comm.add(iv.start, iv.end)
		}
	})
}

// parallel runs f(0), ..., f(n-1), at most GOMAXPROCS (at least 2) at once.
func parallel(n int, f func(i int)) {
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 2))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

type kinetoHandler struct {
	ctx  context.Context
	d    *rankData
	base int64
	n    int
}

func analyzeKinetoFile(ctx context.Context, rf RankFile, label string) (*rankData, error) {
	r, closeFn, err := openTrace(rf.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	defer closeFn()
	h := &kinetoHandler{ctx: ctx, d: newRankData(strings.Trim(label, "[]"), rf.Path)}
	err = scanTrace(r, nil, h)
	if err == nil {
		err = h.d.ivs.finish()
	}
	if err != nil {
		h.d.ivs.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("analyze: %s: %w", rf.Path, err)
	}
	// Timestamps are relative to baseTimeNanoseconds, wherever the key was, and to the
	// host's clock (clock.go).
	shift := rf.axisNs(h.base)
	h.d.shift = shift
	if h.d.active() {
		h.d.first += shift
		h.d.last += shift
	}
	for _, st := range [][]Step{h.d.steps, h.d.stepsCPU} {
		for i := range st {
			st[i].StartNs += shift
			st[i].EndNs += shift
		}
	}
	return h.d, nil
}

func (h *kinetoHandler) topLevel(key string, raw []byte) error {
	if key == "baseTimeNanoseconds" {
		if n, ok := pyInt(raw); ok {
			h.base = n
		}
	}
	return nil
}

func (h *kinetoHandler) event(ev []byte, f *eventFields) error {
	if h.n++; h.n&0xffff == 0 && h.ctx.Err() != nil {
		return h.ctx.Err()
	}
	if p := checkEvent(ev, f); p != probNone {
		h.d.problems.add(p, f.offset)
		return nil
	}
	if string(f.ph.of(ev)) != `"X"` || !f.cat.ok() {
		return nil
	}
	cat := f.cat.of(ev)
	var kind byte
	switch string(cat) {
	case `"kernel"`:
		kind = 'k'
	case `"gpu_memcpy"`, `"gpu_memset"`:
		kind = 'm'
	case `"gpu_user_annotation"`:
		kind = 'g'
	case `"user_annotation"`:
		kind = 'u'
	default:
		return nil
	}
	if !f.ts.ok() || !f.dur.ok() {
		h.d.problems.add(probNoTsDur, f.offset)
		return nil
	}
	ts, ok := tsNanos(f.ts.of(ev))
	if !ok {
		h.d.problems.add(probTsRange, f.offset)
		return nil
	}
	dur, ok := tsNanos(f.dur.of(ev))
	if !ok || dur < 0 || ts > math.MaxInt64-dur {
		h.d.problems.add(probDurRange, f.offset)
		return nil
	}
	name := f.name.of(ev)
	if len(name) >= 2 && name[0] == '"' {
		name = name[1 : len(name)-1]
	}
	switch kind {
	case 'k':
		if strings.IndexByte(string(name), '\\') >= 0 {
			name = []byte(unquote(f.name.of(ev)))
		}
		k, folded := h.d.kernel(name, 1, dur)
		if folded {
			h.d.problems.add(probManyNames, f.offset)
		}
		h.d.activity(ts, ts+dur)
		return h.d.ivs.add(interval{ts, ts + dur, k.comm, 0})
	case 'm':
		h.d.activity(ts, ts+dur)
		return h.d.ivs.add(interval{ts, ts + dur, false, 0})
	case 'g':
		addStep(&h.d.steps, &h.d.nSteps, Step{unquote(f.name.of(ev)), ts, ts + dur})
	case 'u':
		addStep(&h.d.stepsCPU, &h.d.nStepsCPU, Step{unquote(f.name.of(ev)), ts, ts + dur})
	}
	return nil
}

// ErrNoKernels: the capture holds no GPU kernels (a CPU-only target, or no --trace=cuda).
var ErrNoKernels = errors.New("no GPU kernels in the capture")
