package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// fakeSGLang is a small SGLang: /get_server_info, /start_profile and /stop_profile with
// SGLang's answers (refusals are bare 500s). onStart and onStop stand for the
// cudaProfilerStart/Stop calls the real server makes: a test drops a range report there.
type fakeSGLang struct {
	mu      sync.Mutex
	active  bool
	starts  []map[string]any
	stops   int
	onStart func(body map[string]any)
	onStop  func()
}

func (f *fakeSGLang) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/get_server_info":
		_, _ = io.WriteString(w, `{"tp_size": 1, "model_path": "fake"}`)
	case "/start_profile":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		if f.active {
			f.mu.Unlock()
			http.Error(w, "Profiling is already in progress. Call /stop_profile first.", 500)
			return
		}
		f.active = true
		f.starts = append(f.starts, body)
		on := f.onStart
		f.mu.Unlock()
		if on != nil {
			on(body)
		}
		_, _ = io.WriteString(w, "Start profiling.\n")
	case "/stop_profile":
		f.mu.Lock()
		f.stops++
		was := f.active
		f.active = false
		on := f.onStop
		f.mu.Unlock()
		if !was {
			http.Error(w, "Profiling is not in progress. Call /start_profile first.", 500)
			return
		}
		if on != nil {
			on()
		}
		_, _ = io.WriteString(w, "Stop profiling. This will take some time.\n")
	default:
		http.NotFound(w, r)
	}
}

// endBySteps is the server ending a bounded window by itself.
func (f *fakeSGLang) endBySteps() {
	f.mu.Lock()
	f.active = false
	f.mu.Unlock()
}

// fakeSession is the nsys side: the session's first output and its state.
type fakeSession struct {
	first string
	mu    sync.Mutex
	state nsys.State
}

func (s *fakeSession) get(context.Context) (nsys.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, nil
}

func (s *fakeSession) set(st nsys.State) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

// drop writes a range report next to the first output, as nsys does when a range ends.
func (s *fakeSession) drop(t *testing.T, suffix, content string) string {
	t.Helper()
	p := s.first + suffix
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Error(err)
	}
	return p
}

func newCudaTest(t *testing.T, srv http.Handler) (*CudaProfiler, *fakeSession) {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	dir := filepath.Join(t.TempDir(), "sessions", "s")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sess := &fakeSession{first: filepath.Join(dir, "first"), state: nsys.StateStartRange}
	b := &CudaProfiler{Ctl: &nsys.Controller{Mode: nsys.ModeCudaProfiler, Session: "s"}, Version: "test",
		ServerURL: hs.URL, RangeWait: 2 * time.Second, Poll: 20 * time.Millisecond, Settle: 60 * time.Millisecond,
		state: sess.get, firstOutput: sess.first}
	return b, sess
}

func newWindow(t *testing.T, id, name string, steps int) shared.Window {
	dir := filepath.Join(t.TempDir(), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return shared.Window{ID: id, Dir: dir, Name: name, Steps: steps}
}

// TestCudaProfilerStepsWindowCollectsRange: a --steps window asks for CUDA_PROFILER with
// num_steps into the window's folder; the server ends it by itself, nsys drops the range
// report next to the first output, and Wait moves that one (not an older range's) into
// the window folder under the window's name.
func TestCudaProfilerStepsWindowCollectsRange(t *testing.T) {
	srv := &fakeSGLang{}
	b, sess := newCudaTest(t, srv)
	old := sess.drop(t, ".1.nsys-rep", "an earlier window's range")
	srv.onStart = func(map[string]any) {
		go func() {
			sess.set(nsys.StateRangeCollection)
			time.Sleep(100 * time.Millisecond)
			srv.endBySteps()
			sess.set(nsys.StateRangeGeneration)
			time.Sleep(100 * time.Millisecond)
			sess.drop(t, ".2.nsys-rep", "the range of this window")
			sess.set(nsys.StateStartRange)
		}()
	}
	w := newWindow(t, "w1", "decode", 5)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	res, err := b.Wait(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0] != "decode.nsys-rep" {
		t.Fatalf("artifacts: %v", res.Artifacts)
	}
	got, err := os.ReadFile(filepath.Join(w.Dir, "decode.nsys-rep"))
	if err != nil || string(got) != "the range of this window" {
		t.Fatalf("moved report: %q %v", got, err)
	}
	if fi, _ := os.Stat(filepath.Join(w.Dir, "decode.nsys-rep")); fi.Mode().Perm() != 0o600 {
		t.Errorf("a report embeds the server's environment: mode %v", fi.Mode().Perm())
	}
	if _, err := os.Stat(sess.first + ".2.nsys-rep"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the range report should have moved: %v", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Errorf("an earlier range's report must stay where it is: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir, serverDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty server output dir should be gone: %v", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.starts) != 1 {
		t.Fatalf("starts: %v", srv.starts)
	}
	body := srv.starts[0]
	acts, _ := body["activities"].([]any)
	if len(acts) != 1 || acts[0] != "CUDA_PROFILER" || body["num_steps"] != float64(5) || body["output_dir"] != filepath.Join(w.Dir, serverDir) {
		t.Errorf("start body: %v", body)
	}
	if srv.stops != 0 {
		t.Errorf("a window the server ended by itself needs no stop: %d stops", srv.stops)
	}
}

// TestCudaProfilerStopImportsLoneQdstrm: a window closed with stop; nsys left only the
// range's .qdstrm, which the backend imports.
func TestCudaProfilerStopImportsLoneQdstrm(t *testing.T) {
	srv := &fakeSGLang{}
	b, sess := newCudaTest(t, srv)
	srv.onStop = func() { sess.drop(t, ".1.qdstrm", "raw") }
	var imported []string
	b.importRep = func(_ context.Context, q string) (string, error) {
		imported = append(imported, q)
		rep := strings.TrimSuffix(q, ".qdstrm") + ".nsys-rep"
		return rep, os.WriteFile(rep, []byte("report"), 0o600)
	}
	w := newWindow(t, "w2", "", 0)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	res, err := b.Stop(context.Background(), w, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0] != "report.nsys-rep" || len(imported) != 1 {
		t.Fatalf("artifacts %v, imported %v", res.Artifacts, imported)
	}
	if _, err := os.Stat(filepath.Join(w.Dir, "report.qdstrm")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the imported .qdstrm should be gone: %v", err)
	}
	if srv.stops != 1 {
		t.Errorf("stops: %d", srv.stops)
	}
}

// TestCudaProfilerNoRangeFails: a server that takes no steps (or has no GPU) opens no
// range: the window fails within RangeWait with the reason, and the server is not left
// profiling.
func TestCudaProfilerNoRangeFails(t *testing.T) {
	srv := &fakeSGLang{}
	b, _ := newCudaTest(t, srv)
	b.RangeWait = 300 * time.Millisecond
	w := newWindow(t, "w3", "", 5)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err := b.Wait(context.Background(), w)
	if err == nil || !strings.Contains(err.Error(), "no capture range fired") || !strings.Contains(err.Error(), "first GPU of each node") {
		t.Fatalf("want the no-range reason, got %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("the wait took %s", d)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.active || srv.stops != 1 {
		t.Errorf("the failed window's profile should be stopped: active %v, stops %d", srv.active, srv.stops)
	}
}

// TestCudaProfilerRangeInProgressKeepsWaiting: a range that runs longer than RangeWait is
// not "no range": the wait lasts while the session is in RangeCollection.
func TestCudaProfilerRangeInProgressKeepsWaiting(t *testing.T) {
	srv := &fakeSGLang{}
	b, sess := newCudaTest(t, srv)
	b.RangeWait = 150 * time.Millisecond
	srv.onStart = func(map[string]any) {
		sess.set(nsys.StateRangeCollection)
		go func() {
			time.Sleep(600 * time.Millisecond)
			srv.endBySteps()
			sess.drop(t, ".1.nsys-rep", "long range")
			sess.set(nsys.StateStartRange)
		}()
	}
	w := newWindow(t, "w4", "long", 50)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	res, err := b.Wait(context.Background(), w)
	if err != nil || len(res.Artifacts) != 1 || res.Artifacts[0] != "long.nsys-rep" {
		t.Fatalf("%v %v", res, err)
	}
}

// TestCudaProfilerErrorsMapOntoContract: a second start is busy, a server that is down is
// a gone target, steps on vLLM are unsupported.
func TestCudaProfilerErrorsMapOntoContract(t *testing.T) {
	srv := &fakeSGLang{}
	b, _ := newCudaTest(t, srv)
	w := newWindow(t, "w5", "", 0)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), newWindow(t, "w6", "", 0)); !errors.Is(err, shared.ErrBusy) {
		t.Errorf("second start: %v", err)
	}

	vllm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			_, _ = io.WriteString(w, `{"data": [{"id": "m", "owned_by": "vllm"}]}`)
			return
		}
		http.NotFound(w, r)
	})
	bv, _ := newCudaTest(t, vllm)
	if err := bv.Start(context.Background(), newWindow(t, "w7", "", 5)); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "vLLM") {
		t.Errorf("steps on vLLM: %v", err)
	}

	hs := httptest.NewServer(srv)
	url := hs.URL
	hs.Close()
	bd, _ := newCudaTest(t, srv)
	bd.ServerURL = url
	if err := bd.Start(context.Background(), newWindow(t, "w8", "", 0)); !errors.Is(err, shared.ErrTargetGone) {
		t.Errorf("server down: %v", err)
	}
}

// TestBuiltinDefaultFollowsArming: nsys is the default of a session armed start-later or
// launch, where cuda-profiler says why it cannot be used; cuda-profiler is the default of
// one armed cuda-profiler with a server URL.
func TestBuiltinDefaultFollowsArming(t *testing.T) {
	ctx := context.Background()
	reg := func(ctl *nsys.Controller, url string) *windows.Registry {
		t.Helper()
		entries, err := Builtin(ctx, ctl, "test", nil, BuiltinOptions{ServerURL: url})
		if err != nil {
			t.Fatal(err)
		}
		r, err := windows.NewRegistry(entries...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, mode := range []nsys.Mode{nsys.ModeLaunch, nsys.ModeStartLater} {
		r := reg(&nsys.Controller{Mode: mode, FirstOutput: "/x/first"}, "http://127.0.0.1:1")
		if r.Default() != NsysName {
			t.Errorf("%s: default %q", mode, r.Default())
		}
		e, _ := r.Lookup(CudaProfilerName)
		if !strings.Contains(e.Unavailable, "--arm cuda-profiler") {
			t.Errorf("%s: cuda-profiler reason %q", mode, e.Unavailable)
		}
	}
	r := reg(&nsys.Controller{Mode: nsys.ModeCudaProfiler, FirstOutput: "/x/first"}, "http://127.0.0.1:1")
	if r.Default() != CudaProfilerName {
		t.Errorf("cuda-profiler arming: default %q", r.Default())
	}
	e, _ := r.Lookup(CudaProfilerName)
	if !e.Info.Has(shared.CapSteps) || !e.Info.Has(shared.CapExport) {
		t.Error("cuda-profiler must declare steps and export")
	}
	if res, err := e.Backend.(shared.Finalizer).Finalize(ctx, shared.Window{ID: "w", Dir: t.TempDir()}, shared.Discard); err != nil || len(res.Artifacts)+len(res.Warnings) != 0 {
		t.Errorf("a window without --export has nothing to finalize: %+v %v", res, err)
	}
	r = reg(&nsys.Controller{Mode: nsys.ModeCudaProfiler, FirstOutput: "/x/first"}, "")
	e, _ = r.Lookup(CudaProfilerName)
	if !strings.Contains(e.Unavailable, "--server-url") || r.Default() != "" {
		t.Errorf("no server URL: %q, default %q", e.Unavailable, r.Default())
	}
}

// TestCudaProfilerTwoRangesAndEdges: two ranges in one window are both kept (NAME,
// NAME.2, with a warning); a range that ran but left no report, and a session that is
// gone, fail with their own reasons.
func TestCudaProfilerTwoRangesAndEdges(t *testing.T) {
	t.Run("two ranges", func(t *testing.T) {
		srv := &fakeSGLang{}
		b, sess := newCudaTest(t, srv)
		srv.onStop = func() {
			sess.drop(t, ".3.nsys-rep", "second")
			sess.drop(t, ".2.nsys-rep", "first")
		}
		w := newWindow(t, "w9", "pair", 0)
		if err := b.Start(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		res, err := b.Stop(context.Background(), w, shared.Discard)
		if err != nil || strings.Join(res.Artifacts, ",") != "pair.nsys-rep,pair.2.nsys-rep" || len(res.Warnings) != 1 {
			t.Fatalf("%+v %v", res, err)
		}
		if got, _ := os.ReadFile(filepath.Join(w.Dir, "pair.nsys-rep")); string(got) != "first" {
			t.Errorf("ranges out of order: %q", got)
		}
	})
	t.Run("range without report", func(t *testing.T) {
		srv := &fakeSGLang{}
		b, sess := newCudaTest(t, srv)
		b.RangeWait = 200 * time.Millisecond
		srv.onStart = func(map[string]any) { sess.set(nsys.StateRangeCollection) }
		srv.onStop = func() {
			sess.set(nsys.StateStartRange)
			sess.drop(t, ".1.qdstrm", "") // nsys never wrote into it
		}
		w := newWindow(t, "w10", "", 0)
		if err := b.Start(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		_, err := b.Stop(context.Background(), w, shared.Discard)
		if err == nil || !strings.Contains(err.Error(), "a capture range ran") {
			t.Fatalf("want the ran-but-no-report reason, got %v", err)
		}
	})
	t.Run("session gone", func(t *testing.T) {
		srv := &fakeSGLang{}
		b, _ := newCudaTest(t, srv)
		b.state = func(context.Context) (nsys.State, error) { return "", &nsys.SessionNotFoundError{Name: "s"} }
		w := newWindow(t, "w11", "", 3)
		if err := b.Start(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Wait(context.Background(), w); !errors.Is(err, shared.ErrTargetGone) {
			t.Fatalf("want target gone, got %v", err)
		}
	})
}

// TestCudaProfilerImportsTheRangesRawStream reproduces nsys 2025.3.1 on the H200: with
// --capture-range-end=repeat it writes no report when a range ends (FIRST.N.nsys-rep come
// only at the server's exit) but prints "Generating '/tmp/nsys-report-XXXX.qdstrm'" and
// writes that raw stream. The backend imports a copy of it into the window (before, the
// window failed: "a capture range ran ... but nsys wrote no report").
func TestCudaProfilerImportsTheRangesRawStream(t *testing.T) {
	srv := &fakeSGLang{}
	b, sess := newCudaTest(t, srv)
	b.TargetLog = filepath.Join(t.TempDir(), "target.log")
	if err := os.WriteFile(b.TargetLog, []byte("Generating '/tmp/an-earlier-window.qdstrm'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(t.TempDir(), "nsys-report-be4a.qdstrm")
	srv.onStart = func(map[string]any) {
		go func() {
			sess.set(nsys.StateRangeCollection)
			time.Sleep(100 * time.Millisecond)
			srv.endBySteps()
			_ = os.WriteFile(stream, []byte("the raw range"), 0o664)
			f, _ := os.OpenFile(b.TargetLog, os.O_APPEND|os.O_WRONLY, 0)
			_, _ = f.WriteString("Capture range ended in the application.\nGenerating '" + stream + "'\n")
			f.Close()
			sess.set(nsys.StateStartRange)
		}()
	}
	var imported []string
	b.importRep = func(_ context.Context, q string) (string, error) {
		imported = append(imported, q)
		raw, _ := os.ReadFile(q)
		rep := strings.TrimSuffix(q, ".qdstrm") + ".nsys-rep"
		return rep, os.WriteFile(rep, append([]byte("report of "), raw...), 0o600)
	}
	w := newWindow(t, "w9", "decode", 20)
	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	res, err := b.Wait(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0] != "decode.nsys-rep" || len(imported) != 1 || filepath.Dir(imported[0]) != w.Dir {
		t.Fatalf("artifacts %v, imported %v", res.Artifacts, imported)
	}
	if got, _ := os.ReadFile(filepath.Join(w.Dir, "decode.nsys-rep")); string(got) != "report of the raw range" {
		t.Errorf("report: %q", got)
	}
	if _, err := os.Stat(stream); err != nil {
		t.Errorf("nsys's own stream must stay (it writes FIRST.N from it at exit): %v", err)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "only when the server exits") {
		t.Errorf("warnings: %v", res.Warnings)
	}
}

// TestCudaProfilerFindsTheStreamWithoutTheLogLine: nsys's output reaches target.log
// block-buffered (on the H200 its "Generating" lines came only at exit), so the backend
// also finds the one new nsys-report-*.qdstrm in nsys's temporary folder; with two it
// takes none.
func TestCudaProfilerFindsTheStreamWithoutTheLogLine(t *testing.T) {
	for _, streams := range []int{1, 2} {
		srv := &fakeSGLang{}
		b, sess := newCudaTest(t, srv)
		b.TargetLog = filepath.Join(t.TempDir(), "target.log")
		_ = os.WriteFile(b.TargetLog, nil, 0o600)
		b.StreamDir = t.TempDir()
		old := filepath.Join(b.StreamDir, "nsys-report-0000.qdstrm")
		_ = os.WriteFile(old, []byte("an older range"), 0o600)
		_ = os.Chtimes(old, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
		srv.onStart = func(map[string]any) {
			go func() {
				sess.set(nsys.StateRangeCollection)
				time.Sleep(100 * time.Millisecond)
				srv.endBySteps()
				for i := 0; i < streams; i++ {
					_ = os.WriteFile(filepath.Join(b.StreamDir, fmt.Sprintf("nsys-report-be4%d.qdstrm", i)), []byte("the raw range"), 0o600)
				}
				sess.set(nsys.StateStartRange)
			}()
		}
		b.importRep = func(_ context.Context, q string) (string, error) {
			rep := strings.TrimSuffix(q, ".qdstrm") + ".nsys-rep"
			return rep, os.WriteFile(rep, []byte("report"), 0o600)
		}
		w := newWindow(t, fmt.Sprintf("w%d", streams), "decode", 20)
		if err := b.Start(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		res, err := b.Wait(context.Background(), w)
		switch streams {
		case 1:
			if err != nil || len(res.Artifacts) != 1 || res.Artifacts[0] != "decode.nsys-rep" {
				t.Errorf("one stream: %v %v", res.Artifacts, err)
			}
		case 2:
			if err == nil {
				t.Errorf("two candidate streams must not be attributed on a guess: %v", res.Artifacts)
			}
		}
	}
}
