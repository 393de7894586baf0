package torchprof

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// A rank's GPU intervals (kernels, memcpy, memset) give its busy time, the union over
// streams, and that union's share of each timeline bin. The union needs the intervals
// sorted by start, and the bins split the range of all ranks, known only once every
// rank is read. Kineto traces list them in roughly per-stream order, nsys exports in
// table order, so they go through an intervalSorter (one per Kineto rank, one for a
// whole export), which keeps memory flat in their number. (SQLite's ORDER BY start
// would do for nsys, but measured 2-3 times slower than this in pure-Go SQLite.)

type interval struct {
	start, end int64
	comm       bool
	rank       int32 // which rank, when one sorter takes several (nsys)
}

// Variables only so that tests can make runs tiny and merges deep.
var (
	// runLen intervals (3 MiB) are sorted in memory at once; each full run is spilled.
	runLen = 1 << 17
	// A rank with at most keepLen intervals (96 KiB) keeps them in memory, unspilled.
	keepLen = 1 << 12
	// mergeFanIn runs are merged at once, each read through a runBufSize buffer (4 MiB
	// in all); more runs are first merged in groups into longer ones.
	mergeFanIn = 64
)

const runBufSize = 64 << 10

// intervalSorter takes intervals in any order and hands them back sorted by start. Memory is one run of at most runLen intervals while adding, at most keepLen
// between finish and each, and mergeFanIn read buffers while merging. Full runs go,
// sorted and delta-encoded (about 7 bytes an interval), to a temporary file in
// $TMPDIR that is unlinked as soon as it is created, so nothing is left behind even when
// the process is killed. Not safe for concurrent use.
type intervalSorter struct {
	buf  []interval
	f    *os.File
	w    *bufio.Writer
	size int64 // bytes written to f
	runs []run
}

// run is one sorted run in the file: n intervals in [off, off+size).
type run struct{ off, size, n int64 }

func (s *intervalSorter) add(iv interval) error {
	if len(s.buf) == cap(s.buf) {
		// Grow by hand: append would overshoot runLen.
		nb := make([]interval, len(s.buf), min(max(2*cap(s.buf), 1024), runLen))
		copy(nb, s.buf)
		s.buf = nb
	}
	s.buf = append(s.buf, iv)
	if len(s.buf) == runLen {
		return s.spill()
	}
	return nil
}

func byStart(a, b interval) int { return cmp.Compare(a.start, b.start) }

// spill sorts the buffered intervals and appends them to the file as one run.
func (s *intervalSorter) spill() error {
	slices.SortFunc(s.buf, byStart)
	if s.f == nil {
		f, err := os.CreateTemp("", "nsys-agent-analyze-*.intervals")
		if err != nil {
			return fmt.Errorf("sort GPU intervals: %w", err)
		}
		os.Remove(f.Name()) // the open file lives on; fails harmlessly where it cannot
		s.f, s.w = f, bufio.NewWriterSize(f, runBufSize)
	}
	rw := runWriter{w: s.w, r: run{off: s.size}}
	for _, iv := range s.buf {
		rw.write(iv)
	}
	if rw.err != nil {
		return fmt.Errorf("sort GPU intervals: write %s: %w", s.f.Name(), rw.err)
	}
	s.size += rw.r.size
	s.runs = append(s.runs, rw.r)
	s.buf = s.buf[:0]
	return nil
}

// runWriter encodes one sorted run: per interval the start as a delta from the
// previous one, the length, and the rank with the comm flag, as varints.
type runWriter struct {
	w    *bufio.Writer
	r    run
	prev int64
	rec  [3 * binary.MaxVarintLen64]byte
	err  error
}

func (rw *runWriter) write(iv interval) {
	flag := uint64(0)
	if iv.comm {
		flag = 1
	}
	b := binary.AppendUvarint(rw.rec[:0], uint64(iv.start-rw.prev))
	b = binary.AppendUvarint(b, uint64(iv.end-iv.start))
	b = binary.AppendUvarint(b, uint64(uint32(iv.rank))<<1|flag)
	if _, err := rw.w.Write(b); err != nil && rw.err == nil {
		rw.err = err
	}
	rw.r.size += int64(len(b))
	rw.r.n++
	rw.prev = iv.start
}

// finish ends adding: a small rank stays in memory, sorted; anything else is spilled
// and its run buffer freed.
func (s *intervalSorter) finish() error {
	if s.f == nil && len(s.buf) <= keepLen {
		slices.SortFunc(s.buf, byStart)
		return nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	s.buf = nil
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sort GPU intervals: write %s: %w", s.f.Name(), err)
	}
	return nil
}

// each calls fn with every interval in order of start (ties in no particular order).
func (s *intervalSorter) each(ctx context.Context, fn func(interval)) error {
	if s.f == nil {
		for _, iv := range s.buf {
			fn(iv)
		}
		return nil
	}
	for len(s.runs) > mergeFanIn {
		// Merge the first runs into one at the end of the file: fewer, longer runs.
		rw := runWriter{w: s.w, r: run{off: s.size}}
		err := s.merge(ctx, s.runs[:mergeFanIn], rw.write)
		if err == nil {
			err = cmp.Or(rw.err, s.w.Flush())
		}
		if err != nil {
			return fmt.Errorf("sort GPU intervals: %w", err)
		}
		s.size += rw.r.size
		s.runs = append(s.runs[mergeFanIn:], rw.r)
	}
	if err := s.merge(ctx, s.runs, fn); err != nil {
		return fmt.Errorf("sort GPU intervals: %w", err)
	}
	return nil
}

// merge calls fn with the intervals of runs in order of start, through a min-heap of
// one cursor per run.
func (s *intervalSorter) merge(ctx context.Context, runs []run, fn func(interval)) error {
	h := make([]*runCursor, 0, len(runs))
	for _, r := range runs {
		c := &runCursor{r: bufio.NewReaderSize(io.NewSectionReader(s.f, r.off, r.size), runBufSize), left: r.n}
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, c)
		}
	}
	less := func(i, j int) bool { return h[i].cur.start < h[j].cur.start }
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			if r := l + 1; r < len(h) && less(r, l) {
				l = r
			}
			if !less(l, i) {
				return
			}
			h[i], h[l] = h[l], h[i]
			i = l
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for n := 0; len(h) > 0; n++ {
		if n&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		fn(h[0].cur)
		ok, err := h[0].next()
		if err != nil {
			return err
		}
		if !ok {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		down(0)
	}
	return nil
}

// close releases the file; the sorter is empty afterwards.
func (s *intervalSorter) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
	*s = intervalSorter{}
}

type runCursor struct {
	r    *bufio.Reader
	left int64
	prev int64
	cur  interval
}

func (c *runCursor) next() (bool, error) {
	if c.left == 0 {
		return false, nil
	}
	c.left--
	d, err := binary.ReadUvarint(c.r)
	if err != nil {
		return false, errCorrupt(err)
	}
	l, err := binary.ReadUvarint(c.r)
	if err != nil {
		return false, errCorrupt(err)
	}
	rf, err := binary.ReadUvarint(c.r)
	if err != nil {
		return false, errCorrupt(err)
	}
	c.prev += int64(d)
	c.cur = interval{c.prev, c.prev + int64(l), rf&1 == 1, int32(uint32(rf >> 1))}
	return true, nil
}

func errCorrupt(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read back the temporary file: %w", err)
}

// unionBins computes, from intervals added in order of start, the length of their
// union and the covered fraction of each of timelineBins bins of [start, end).
type unionBins struct {
	start      int64
	width      float64
	bins       []float64
	total      int64
	curS, curE int64
	empty      bool // end <= start: no range to bin
}

func newUnionBins(start, end int64) *unionBins {
	return &unionBins{start: start, width: float64(end-start) / timelineBins, bins: make([]float64, timelineBins),
		curE: math.MinInt64, empty: end <= start}
}

func (u *unionBins) add(start, end int64) {
	if start > u.curE {
		if u.curE > u.curS {
			u.cover(u.curS, u.curE)
		}
		u.curS, u.curE = start, end
	} else if end > u.curE {
		u.curE = end
	}
}

func (u *unionBins) cover(a, b int64) {
	u.total += b - a
	fa, fb := float64(a-u.start)/u.width, float64(b-u.start)/u.width
	for i := int(fa); i < timelineBins && float64(i) < fb; i++ {
		lo, hi := math.Max(fa, float64(i)), math.Min(fb, float64(i+1))
		u.bins[i] += hi - lo
	}
}

// result returns the union's length and the bins, each rounded to 0.001 and at most 1.
func (u *unionBins) result() (int64, []float64) {
	if u.empty {
		return 0, make([]float64, timelineBins)
	}
	if u.curE > u.curS {
		u.cover(u.curS, u.curE)
		u.curS, u.curE = 0, math.MinInt64
	}
	for i := range u.bins {
		u.bins[i] = round3(math.Min(u.bins[i], 1))
	}
	return u.total, u.bins
}
