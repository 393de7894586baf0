package torchprof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// bombGz returns a gzip stream (several members, which every gzip reader, zcat included,
// joins) of head followed by unit repeated to n bytes, without a closing: what a
// hostile or broken producer could write. 1 GiB of one byte compresses to about 1 MB.
func bombGz(t testing.TB, head, unit string, n int) []byte {
	t.Helper()
	var out bytes.Buffer
	member := func(p []byte) {
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
		zw.Write(p)
		zw.Close()
	}
	member([]byte(head))
	const block = 1 << 20
	chunk := bytes.Repeat([]byte(unit), block/len(unit))
	var blockGz []byte
	for written := 0; written < n; written += len(chunk) {
		if blockGz == nil {
			at := out.Len()
			member(chunk)
			blockGz = bytes.Clone(out.Bytes()[at:])
			continue
		}
		out.Write(blockGz) // every full block compresses the same
	}
	return out.Bytes()
}

// readCap fails reads past limit, and every read once aborted: a scanner that keeps
// reading a hostile value instead of refusing it fails here rather than running for
// minutes.
type readCap struct {
	r       io.Reader
	n       int64
	limit   int64
	aborted atomic.Bool
}

func (c *readCap) Read(p []byte) (int, error) {
	if c.aborted.Load() {
		return 0, errors.New("aborted by the test")
	}
	if c.n >= c.limit {
		return 0, fmt.Errorf("read %d bytes without refusing the value", c.n)
	}
	n, err := c.r.Read(p[:min(int64(len(p)), c.limit-c.n)])
	c.n += int64(n)
	return n, err
}

// TestScanRefusesHugeTokens: one 1 GiB string (the review's 4.5 MB gzip bomb, here 1 MB)
// used to be reparsed from its start after every read (quadratic: minutes) while the
// buffer grew to 1 GiB. It must be refused once it passes the token limit, having read
// and allocated a small multiple of the limit, with the offset where the token starts.
func TestScanRefusesHugeTokens(t *testing.T) {
	for _, tc := range []struct {
		name, head, unit string
		offset           int64
		what             string
	}{
		{"string", `{"traceEvents": [{"name": "`, "a", 26, "a string longer than 16 MiB"},
		{"key", `{"traceEvents": [{"ph": "X", "`, "k", 29, "a string longer than 16 MiB"},
		{"top-level string", `{"traceName": "`, "a", 14, "a string longer than 16 MiB"},
		{"number", `{"traceEvents": [{"ts": 1`, "0", 24, "a number longer than 16 MiB"},
		{"event of small values", `{"traceEvents": [{"args": [`, "1,", 17, "an event or top-level value larger than 32 MiB, the limit for one value"},
		{"white space in an event", `{"traceEvents": [{"ts": 1`, " ", 17, "an event or top-level value larger than 32 MiB, the limit for one value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gz := bombGz(t, tc.head, tc.unit, 1<<30)
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			r := &readCap{r: zr, limit: 2*maxValueSize + scanBufSize}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- scanTrace(r, nil, &collect{}) }()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				// Not a timing assertion: a guard so that the old quadratic scanner (which
				// ran for minutes here) fails with a message instead of hitting the test
				// binary's timeout. The fixed one takes well under a second.
				r.aborted.Store(true)
				<-done
				t.Fatalf("still scanning after a minute, having read %d MiB: the work is not linear", r.n>>20)
			}
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d kB of gzip: refused after reading %d MiB, allocating %d MiB, in %v: %v",
				len(gz)>>10, r.n>>20, alloc>>20, took.Round(time.Millisecond), err)
			var se *SyntaxError
			if !errors.Is(err, ErrTraceLimit) || !errors.As(err, &se) {
				t.Fatalf("error %v, want a SyntaxError wrapping ErrTraceLimit", err)
			}
			if se.Offset != tc.offset || !strings.Contains(err.Error(), tc.what) {
				t.Errorf("error %q: want offset %d and %q", err, tc.offset, tc.what)
			}
			// Linear and bounded: a token is refused after at most twice its limit was read
			// (the buffer doubles), a value after its limit, plus what came before it.
			limit := int64(2*maxTokenSize + scanBufSize)
			if strings.Contains(tc.what, "value") {
				limit = maxValueSize + scanBufSize
			}
			if r.n > limit {
				t.Errorf("read %d bytes before refusing, want at most %d", r.n, limit)
			}
			if alloc > uint64(3*limit) {
				t.Errorf("allocated %d MiB before refusing, want at most %d", alloc>>20, 3*limit>>20)
			}
		})
	}
}

// TestScanRefusesDeepNesting: nesting is bounded (the parser recurses), and a value
// nested exactly to the limit still scans.
func TestScanRefusesDeepNesting(t *testing.T) {
	nest := func(depth int) string {
		// The event object is level 1.
		return `{"traceEvents": [{"args": ` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}]}`
	}
	if err := scanTrace(strings.NewReader(nest(maxDepth)), nil, &collect{}); err != nil {
		t.Errorf("%d levels: %v", maxDepth, err)
	}
	err := scanTrace(strings.NewReader(nest(maxDepth+1)), nil, &collect{})
	var se *SyntaxError
	if !errors.Is(err, ErrTraceLimit) || !errors.As(err, &se) || se.Offset != 26+maxDepth-1 {
		t.Errorf("%d levels: error %v, want ErrTraceLimit at offset %d", maxDepth+1, err, 26+maxDepth-1)
	}
	// A million open brackets in a top-level value: refused at the limit, not at the end.
	gz := bombGz(t, `{"x": `, "[", 1<<20)
	zr, _ := gzip.NewReader(bytes.NewReader(gz))
	if err := scanTrace(zr, nil, &collect{}); !errors.Is(err, ErrTraceLimit) {
		t.Errorf("deep top-level value: %v, want ErrTraceLimit", err)
	}
}

// TestHugeStringNamesFileAndLimit: merge and analyze refuse the 1 GiB-string trace with
// the file, the offset and the limit in the message.
func TestHugeStringNamesFileAndLimit(t *testing.T) {
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb-TP-0.trace.json.gz")
	if err := os.WriteFile(bomb, bombGz(t, `{"traceEvents": [{"name": "`, "a", 1<<30), 0o644); err != nil {
		t.Fatal(err)
	}
	files := RankFilesFromPaths([]string{bomb})
	want := []string{bomb, "offset 26", "16 MiB"}
	_, err := Merge(context.Background(), files, filepath.Join(dir, "m.trace.json.gz"), MergeOptions{})
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("merge: error %v should contain %q", err, w)
		}
	}
	_, err = AnalyzeKineto(context.Background(), files)
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("analyze: error %v should contain %q", err, w)
		}
	}
}

// TestMergeBoundsTopLevelKeys: merge keeps the top-level keys other than traceEvents
// (first file wins), so a trace of many big ones, each within the value limit, would
// hold them all in memory; past maxTopLevelBytes in all it is refused.
func TestMergeBoundsTopLevelKeys(t *testing.T) {
	dir := t.TempDir()
	unit := `"k": "` + strings.Repeat("x", 1<<20-10) + `", `
	p := filepath.Join(dir, "top-TP-0.trace.json.gz")
	if err := os.WriteFile(p, bombGz(t, `{"traceEvents": [], `, unit, 2*maxTopLevelBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Merge(context.Background(), RankFilesFromPaths([]string{p}), filepath.Join(dir, "m.trace.json.gz"), MergeOptions{NoClockAlign: true})
	if !errors.Is(err, ErrTraceLimit) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "64 MiB") {
		t.Errorf("error %v, want ErrTraceLimit naming %s and the 64 MiB limit", err, p)
	}
}
