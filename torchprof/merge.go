package torchprof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// MergeOptions tunes Merge. The zero value is what SGLang users expect.
type MergeOptions struct {
	// Level is the gzip level of the output; 0 means 1 (fastest), like `gzip -1`.
	Level int
	// Progress, when set, is called from one goroutine about every 100 ms and at the end
	// with the compressed input bytes read so far and in total.
	Progress func(done, total int64)
	// NoClockAlign keeps each rank's timestamps as written even when the ranks'
	// baseTimeNanoseconds or their hosts' clocks differ (SGLang's behaviour).
	NoClockAlign bool
}

// MergeStats describes a finished merge.
type MergeStats struct {
	Output     string      `json:"output"`
	Ranks      []RankStats `json:"ranks"`
	Events     int64       `json:"events"`
	InputBytes int64       `json:"input_bytes"`  // compressed
	OutputRaw  int64       `json:"output_bytes"` // uncompressed JSON written
	Duration   Duration    `json:"duration"`
	// Warnings count malformed events (a ts or dur that is no number, a negative dur, no
	// pid) per input and kind; they were kept unchanged.
	Warnings []Warning `json:"warnings,omitempty"`
	// Hosts are the hosts the ranks come from, when known (RankFile.Host).
	Hosts []string `json:"hosts,omitempty"`
	// Aligned says every rank is on one clock. It is false when ranks of several hosts
	// were merged and some host's clock offset is unknown (UnalignedHosts: their ranks are
	// placed as if their clock were the coordinator's, off by however much it is not),
	// or NoClockAlign kept several hosts' clocks as they were.
	Aligned        bool     `json:"aligned"`
	UnalignedHosts []string `json:"unaligned_hosts,omitempty"`
}

// RankStats is one input file's share of a merge.
type RankStats struct {
	Path   string `json:"path"`
	Label  string `json:"label"`
	Events int64  `json:"events"`
	// ShiftNs is what was added to this rank's timestamps to put it on the reference
	// rank's clock (the first with a baseTimeNanoseconds): its baseTimeNanoseconds minus
	// its host's offset, minus the same of the reference (clock.go).
	ShiftNs int64  `json:"shift_ns,omitempty"`
	Host    string `json:"host,omitempty"`
	// HostOffsetNs is the host's clock minus the coordinator's, part of ShiftNs; only
	// when HostOffsetKnown.
	HostOffsetNs    int64 `json:"host_offset_ns,omitempty"`
	HostOffsetKnown bool  `json:"host_offset_known,omitempty"`
}

// Duration marshals as seconds in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// Merge streams the per-rank traces in files into one gzipped Chrome trace at out,
// equivalent to SGLang's ProfileMerger output for the same files: same events with pid
// rewritten to "<label> <pid>", process_sort_index of pids below 1000 rewritten,
// deviceProperties concatenated, first file wins for the other top-level keys. Events of
// different ranks are interleaved in blocks (order within a rank is kept); trace viewers
// sort by time. Unlike SGLang, ranks whose baseTimeNanoseconds differ are shifted onto
// the first rank's clock, ranks of several hosts onto the coordinator's clock as well
// (RankFile.HostOffsetNs) with host-qualified labels (Labels), and a rank that does not
// parse fails the merge with its file and offset. out is written through a temporary
// file and renamed, so it is either complete or absent.
func Merge(ctx context.Context, files []RankFile, out string, opts MergeOptions) (MergeStats, error) {
	start := time.Now()
	st := MergeStats{Output: out}
	if len(files) == 0 {
		return st, errors.New("merge: no input files")
	}
	level := opts.Level
	if level == 0 {
		level = flate.BestSpeed
	}
	var total int64
	for _, f := range files {
		fi, err := checkRegular(f.Path)
		if err != nil {
			return st, fmt.Errorf("merge: %w", err)
		}
		total += fi.Size()
	}
	st.InputBytes = total

	shifts, _, err := alignment(ctx, files, opts.NoClockAlign)
	if err != nil {
		return st, err
	}
	st.Hosts, st.UnalignedHosts = Hosts(files), UnalignedHosts(files)
	if len(st.Hosts) == 1 && st.Hosts[0] == "" {
		st.Hosts = nil
	}
	st.Aligned = aligned(files, opts.NoClockAlign)
	labels := Labels(files)

	// The merged trace appears whole or not at all (a viewer polling the folder must never
	// open half of it).
	tmp, err := atomicfile.New(out, 0o644)
	if err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	defer tmp.Abort() // no-op once committed

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	chunks := make(chan []byte, 2*len(files))
	var read, topBytes atomic.Int64
	results := make([]rankResult, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 2))
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			res, err := mergeRank(ctx, files[i], labels[i], shifts[i], chunks, &read, &topBytes)
			results[i] = res
			if err != nil {
				cancel(err)
			}
		}()
	}
	go func() { wg.Wait(); close(chunks) }()

	// pgzip compresses 1 MB blocks on every core, each primed with the previous block's
	// last 32 kB, into one gzip member that any reader accepts.
	zw, err := pgzip.NewWriterLevel(tmp, level)
	if err != nil {
		cancel(err)
		for range chunks {
		}
		return st, fmt.Errorf("merge: write %s: %w", out, err)
	}
	raw := &countWriter{w: zw}
	io.WriteString(raw, `{"traceEvents": [`)
	first := true
	lastProgress := time.Now()
	for c := range chunks {
		if !first {
			raw.Write([]byte{','})
		}
		first = false
		raw.Write(c)
		chunkPool.Put(c[:0])
		if opts.Progress != nil && time.Since(lastProgress) > 100*time.Millisecond {
			lastProgress = time.Now()
			opts.Progress(read.Load(), total)
		}
	}
	if err := context.Cause(ctx); err != nil {
		zw.Close()
		return st, err
	}
	io.WriteString(raw, "]")
	writeTopLevel(raw, results)
	io.WriteString(raw, "}")
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("merge: write %s: %w", out, err)
	}
	if err := tmp.Commit(); err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	if opts.Progress != nil {
		opts.Progress(total, total)
	}
	for i, r := range results {
		st.Events += r.events
		rf := files[i]
		st.Ranks = append(st.Ranks, RankStats{Path: rf.Path, Label: labels[i], Events: r.events, ShiftNs: shifts[i],
			Host: rf.Host, HostOffsetNs: rf.HostOffsetNs, HostOffsetKnown: rf.HostOffsetKnown})
		st.Warnings = append(st.Warnings, r.problems.warnings(files[i].Path, "kept unchanged")...)
	}
	st.OutputRaw = raw.n
	st.Duration = Duration(time.Since(start))
	return st, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// rankResult is what a rank's decoder leaves for the writer besides events.
type rankResult struct {
	keys     []topKey // in file order, traceEvents and deviceProperties excluded
	props    []byte   // deviceProperties raw, nil when absent
	events   int64
	problems problems // malformed events, kept as they are
}

type topKey struct {
	key string
	raw []byte
}

const chunkSize = 256 << 10

var chunkPool = sync.Pool{New: func() any { return make([]byte, 0, chunkSize+4096) }}

// openTrace opens a trace file, gzipped or not, counting compressed bytes into read.
func openTrace(path string, read *atomic.Int64) (io.Reader, func() error, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = f
	if read != nil {
		r = &countReader{r: f, n: read}
	}
	br := newPeekReader(r)
	if br.gzipped() {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return zr, f.Close, nil
	}
	return br, f.Close, nil
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// peekReader looks at the first two bytes to tell gzip from plain JSON.
type peekReader struct {
	r    io.Reader
	head []byte
}

func newPeekReader(r io.Reader) *peekReader {
	p := &peekReader{r: r}
	var b [2]byte
	n, _ := io.ReadFull(r, b[:])
	p.head = b[:n]
	return p
}

func (p *peekReader) gzipped() bool {
	return len(p.head) == 2 && p.head[0] == 0x1f && p.head[1] == 0x8b
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// mergeHandler rewrites one rank's events into chunks for the writer.
type mergeHandler struct {
	ctx      context.Context
	rf       RankFile
	label    string
	shiftNs  int64
	out      chan<- []byte
	chunk    []byte
	res      rankResult
	topBytes *atomic.Int64 // kept top-level bytes of all ranks
}

func mergeRank(ctx context.Context, rf RankFile, label string, shiftNs int64, out chan<- []byte, read, topBytes *atomic.Int64) (rankResult, error) {
	r, closeFn, err := openTrace(rf.Path, read)
	if err != nil {
		return rankResult{}, fmt.Errorf("merge: %w", err)
	}
	defer closeFn()
	h := &mergeHandler{ctx: ctx, rf: rf, label: label, shiftNs: shiftNs, out: out, chunk: chunkPool.Get().([]byte), topBytes: topBytes}
	if err := scanTrace(r, nil, h); err != nil {
		if ctx.Err() != nil {
			return h.res, context.Cause(ctx)
		}
		return h.res, fmt.Errorf("merge: %s: %w", rf.Path, err)
	}
	if len(h.chunk) > 0 {
		if err := h.send(); err != nil {
			return h.res, err
		}
	}
	return h.res, nil
}

func (h *mergeHandler) send() error {
	select {
	case h.out <- h.chunk:
		h.chunk = chunkPool.Get().([]byte)
		return nil
	case <-h.ctx.Done():
		return context.Cause(h.ctx)
	}
}

// maxTopLevelBytes bounds the top-level values (but traceEvents) merge keeps until the
// end, over all inputs: each is within maxValueSize, but a trace of many of them would
// otherwise be held whole. Kineto writes a few kB.
const maxTopLevelBytes = 64 << 20

func (h *mergeHandler) topLevel(key string, raw []byte) error {
	if h.topBytes.Add(int64(len(raw))) > maxTopLevelBytes {
		return fmt.Errorf("top-level key %q: the keys other than traceEvents hold more than %d MiB, the limit over all inputs: %w",
			key, maxTopLevelBytes>>20, ErrTraceLimit)
	}
	if key == "deviceProperties" {
		h.res.props = bytes.Clone(raw)
		return nil
	}
	h.res.keys = append(h.res.keys, topKey{key, bytes.Clone(raw)})
	return nil
}

func (h *mergeHandler) event(ev []byte, f *eventFields) error {
	if p := checkEvent(ev, f); p != probNone {
		h.res.problems.add(p, f.offset)
	}
	if len(h.chunk) > 0 {
		h.chunk = append(h.chunk, ',')
	}
	h.chunk = rewriteEvent(h.chunk, ev, f, h.rf, h.label, h.shiftNs)
	h.res.events++
	if len(h.chunk) >= chunkSize {
		return h.send()
	}
	return nil
}

// rewriteEvent appends ev with its pid labelled, its process_sort_index rewritten the
// way SGLang does, and its ts shifted by shiftNs.
func rewriteEvent(dst, ev []byte, f *eventFields, rf RankFile, label string, shiftNs int64) []byte {
	type edit struct {
		sp   span
		kind byte
	}
	var edits [3]edit
	n := 0
	// Edits in the order they appear in ev.
	add := func(sp span, kind byte) {
		if !sp.ok() {
			return
		}
		i := n
		for i > 0 && edits[i-1].sp.start > sp.start {
			edits[i] = edits[i-1]
			i--
		}
		edits[i] = edit{sp, kind}
		n++
	}
	add(f.pid, 'p')
	var sortIdx int64
	if f.args.ok() && string(f.name.of(ev)) == `"process_sort_index"` {
		if pid, ok := pyInt(f.pid.of(ev)); ok && pid < 1000 && f.args.of(ev)[0] == '{' {
			sortIdx = rf.sortIndex(pid)
			add(f.args, 'a')
		}
	}
	if shiftNs != 0 {
		add(f.ts, 't')
	}
	at := 0
	for _, e := range edits[:n] {
		dst = append(dst, ev[at:e.sp.start]...)
		v := e.sp.of(ev)
		switch e.kind {
		case 'p':
			dst = appendPidLabel(dst, label, v)
		case 'a':
			dst = withSortIndex(dst, v, sortIdx)
		case 't':
			if ns, ok := tsNanos(v); ok {
				dst = appendMicros(dst, ns+shiftNs)
			} else {
				dst = append(dst, v...)
			}
		}
		at = e.sp.end
	}
	return append(dst, ev[at:]...)
}

// writeTopLevel writes the keys after traceEvents: first file wins, in order of first
// appearance, then every file's deviceProperties concatenated (omitted when empty).
func writeTopLevel(w io.Writer, results []rankResult) {
	seen := map[string]bool{"traceEvents": true}
	for _, r := range results {
		for _, k := range r.keys {
			if seen[k.key] {
				continue
			}
			seen[k.key] = true
			fmt.Fprintf(w, ", %q: ", k.key)
			w.Write(k.raw)
		}
	}
	var props [][]byte
	for _, r := range results {
		p := bytes.TrimSpace(r.props)
		if len(p) >= 2 && p[0] == '[' {
			if inner := bytes.TrimSpace(p[1 : len(p)-1]); len(inner) > 0 {
				props = append(props, inner)
			}
		} else if len(p) > 0 && string(p) != "null" {
			props = append(props, p)
		}
	}
	if len(props) > 0 {
		io.WriteString(w, `, "deviceProperties": [`)
		w.Write(bytes.Join(props, []byte(", ")))
		io.WriteString(w, "]")
	}
}
