package torchprof

import (
	"context"
	"fmt"
	"slices"
)

// Ranks of several hosts on one time axis (issue 14).
//
// Kineto writes ts in microseconds and baseTimeNanoseconds such that
// ts×1000 + baseTimeNanoseconds is the writing host's wall clock in nanoseconds (the
// H100 fixture: 4589780676192.716 µs + 1790857026000000000 ns is a date in 2026). A group
// window's coordinator measures every host's wall clock against its own
// (RankFile.HostOffsetNs: host minus coordinator), so
//
//	ts×1000 + baseTimeNanoseconds − HostOffsetNs
//
// is the coordinator's wall clock: one axis for every rank of every host. clockShifts is
// the one place that turns this into what merge adds to each rank's timestamps and what
// the Perfetto bundle writes as each file's offset_ns; analyze places ranks with the same
// axisNs.

// HostLabel is Label qualified by the file's host, "[gpu-1_7477:TP00-DP01]"; Label when
// the host is unknown.
func (rf RankFile) HostLabel() string {
	l := rf.Label()
	if rf.Host == "" {
		return l
	}
	return "[" + rf.Host + ":" + l[1:]
}

// Labels returns the pid prefix of each file in one merge or analysis: SGLang's own
// labels when the files come from one host (so a one-host merge stays identical to
// SGLang's), host-qualified ones (HostLabel) when they come from several, since ranks of
// different hosts can carry the same parallel ranks (a prefill and a decode server each
// have a TP00).
func Labels(files []RankFile) []string {
	multi := multiHost(files)
	out := make([]string, len(files))
	for i, rf := range files {
		if multi {
			out[i] = rf.HostLabel()
		} else {
			out[i] = rf.Label()
		}
	}
	return out
}

// multiHost says whether files come from more than one host ("" counts as one).
func multiHost(files []RankFile) bool {
	for _, rf := range files[min(len(files), 1):] {
		if rf.Host != files[0].Host {
			return true
		}
	}
	return false
}

// Hosts lists the distinct hosts of files in order of first appearance.
func Hosts(files []RankFile) []string {
	var hosts []string
	for _, rf := range files {
		if !slices.Contains(hosts, rf.Host) {
			hosts = append(hosts, rf.Host)
		}
	}
	return hosts
}

// UnalignedHosts lists the hosts whose clock offset is unknown when files come from
// several hosts: their ranks are placed as if their clock were the coordinator's, so the
// timeline across hosts is off by however much their clocks disagree. nil when files come
// from one host (one clock) or every host's offset is known.
func UnalignedHosts(files []RankFile) []string {
	if !multiHost(files) {
		return nil
	}
	var out []string
	for _, rf := range files {
		if !rf.HostOffsetKnown && !slices.Contains(out, rf.Host) {
			out = append(out, rf.Host)
		}
	}
	return out
}

// axisNs is what puts this rank's timestamps on the common axis, given its
// baseTimeNanoseconds: an event at ts (µs) lies at ts×1000 + axisNs(base) ns there.
func (rf RankFile) axisNs(base int64) int64 {
	if rf.HostOffsetKnown {
		return base - rf.HostOffsetNs
	}
	return base
}

// clockShifts returns, per file, what to add to its timestamps (ns) to put it on the
// reference file's clock, corrected by the hosts' offsets: axisNs(base) minus the
// reference's. The reference is the first file with a baseTimeNanoseconds (ref; 0 when
// none has one). A file without the key is taken to count from the reference's base, as
// the ranks of one host do (with none, every base is 0: ts is then each host's own clock,
// and only the host offsets shift). Kineto writes the key before traceEvents, so usually
// only the head of each file is read.
func clockShifts(ctx context.Context, files []RankFile) (shifts []int64, ref int, err error) {
	bases := make([]int64, len(files))
	has := make([]bool, len(files))
	for i, rf := range files {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		if bases[i], has[i], err = readBaseTime(rf.Path); err != nil {
			return nil, 0, err
		}
	}
	ref = max(slices.Index(has, true), 0)
	refAxis := files[ref].axisNs(bases[ref])
	shifts = make([]int64, len(files))
	for i, rf := range files {
		base := bases[i]
		if !has[i] {
			base = bases[ref]
		}
		shifts[i] = rf.axisNs(base) - refAxis
	}
	return shifts, ref, nil
}

// alignment is clockShifts, or no shift at all (and no file read) with noAlign.
func alignment(ctx context.Context, files []RankFile, noAlign bool) (shifts []int64, ref int, err error) {
	if noAlign {
		return make([]int64, len(files)), 0, nil
	}
	return clockShifts(ctx, files)
}

// aligned says whether files end up on one clock: not when ranks of several hosts are
// kept on their own clocks (noAlign) or some host's offset is unknown.
func aligned(files []RankFile, noAlign bool) bool {
	return len(UnalignedHosts(files)) == 0 && !(noAlign && multiHost(files))
}

// readBaseTime reads a trace's baseTimeNanoseconds: from its head when the key comes
// before traceEvents (Kineto's order), else from the whole file.
func readBaseTime(path string) (base int64, ok bool, err error) {
	for _, stopAt := range []bool{true, false} {
		r, closeFn, err := openTrace(path, nil)
		if err != nil {
			return 0, false, fmt.Errorf("merge: %w", err)
		}
		h := &headerHandler{stopAt: stopAt}
		err = scanTrace(r, nil, h)
		closeFn()
		if err != nil {
			return 0, false, fmt.Errorf("merge: %s: %w", path, err)
		}
		if h.hasBase || !stopAt {
			return h.base, h.hasBase, nil
		}
	}
	return 0, false, nil
}

// headerHandler reads the top-level keys before traceEvents.
type headerHandler struct {
	base    int64
	hasBase bool
	stopAt  bool
}

func (h *headerHandler) topLevel(key string, raw []byte) error {
	if key == "baseTimeNanoseconds" {
		if n, ok := pyInt(raw); ok {
			h.base, h.hasBase = n, true
		}
	}
	return nil
}

func (h *headerHandler) event([]byte, *eventFields) error {
	if h.stopAt {
		return errStop
	}
	return nil
}
