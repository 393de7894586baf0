package serverprof

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fast keeps waits short: the fakes write each trace in 3 chunks 15 ms apart.
var fast = WaitOptions{Interval: 5 * time.Millisecond, Settle: 120 * time.Millisecond}

func testClient(t *testing.T, url string, f Flavor) *Client {
	t.Helper()
	c, err := New(url, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ranksOf(files []File) []File {
	var out []File
	for _, f := range files {
		if f.Kind == RankTrace {
			out = append(out, f)
		}
	}
	return out
}

// A window bounded by num_steps: the server ends it itself and writes a trace per rank;
// Wait returns them whole; the stop that follows meets SGLang's 500 and reads it as
// "already stopped".
func TestSGLangStepsWindowEndsByItself(t *testing.T) {
	s := newFakeSGLang(t, false)
	c := testClient(t, s.srv.URL, SGLang)
	ctx := ctxT(t)
	info, err := c.ServerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.RankFiles() != 2 || info.Version != "0.5.5" {
		t.Fatalf("server info %+v, rank files %d", info, info.RankFiles())
	}
	base := t.TempDir()
	w, err := c.Start(ctx, Request{ID: "w1", BaseDir: base, NumSteps: 4})
	if err != nil {
		t.Fatal(err)
	}
	if w.Dir != filepath.Join(base, "w1") || w.Shared {
		t.Fatalf("window dir %q shared %v", w.Dir, w.Shared)
	}
	body := s.lastBody()
	if len(body) != 2 || body["output_dir"] != w.Dir || body["num_steps"] != 4.0 {
		t.Fatalf("start body %v", body)
	}
	files, err := w.Wait(ctx, WaitOptions{Interval: fast.Interval, Settle: fast.Settle, Expected: info.RankFiles()})
	if err != nil {
		t.Fatal(err)
	}
	ranks := ranksOf(files)
	if len(ranks) != 2 {
		t.Fatalf("files %+v", files)
	}
	for i, f := range ranks {
		if f.Rank.TP != i || f.Size != int64(s.chunks*s.chunkBytes) {
			t.Errorf("file %d: %+v (want TP %d, %d bytes)", i, f, i, s.chunks*s.chunkBytes)
		}
	}
	res, err := c.Stop(ctx, w)
	if err != nil || !res.AlreadyStopped || res.Route != "/stop_profile" {
		t.Fatalf("stop after num_steps: %+v, %v", res, err)
	}
}

// A stop with nothing running meets SGLang's bare 500: ErrNotRunning when the window was
// not bounded by steps; a second start meets it too: ErrAlreadyRunning.
func TestSGLang500s(t *testing.T) {
	s := newFakeSGLang(t, false)
	c := testClient(t, s.srv.URL, SGLang)
	ctx := ctxT(t)
	_, err := c.Stop(ctx, nil)
	wantKind(t, err, ErrNotRunning, "HTTP 500", "Internal Server Error")

	w, err := c.Start(ctx, Request{ID: "a", BaseDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	_, err = c.Start(ctx, Request{ID: "b", BaseDir: dir2})
	wantKind(t, err, ErrAlreadyRunning, "/stop_profile")
	if _, err := os.Stat(filepath.Join(dir2, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start left its dir behind: %v", err)
	}
	res, err := c.Stop(ctx, w)
	if err != nil || res.AlreadyStopped || !strings.HasPrefix(res.Reply, "Stop profiling.") {
		t.Fatalf("stop: %+v, %v", res, err)
	}
	_, err = c.Stop(ctx, w)
	wantKind(t, err, ErrNotRunning)
}

// An older SGLang has /end_profile only: the stop falls back to it on the 404, and later
// stops go there directly.
func TestSGLangEndProfileFallback(t *testing.T) {
	s := newFakeSGLang(t, true)
	c := testClient(t, s.srv.URL, SGLang)
	ctx := ctxT(t)
	base := t.TempDir()
	for _, id := range []string{"first", "second"} {
		w, err := c.Start(ctx, Request{ID: id, BaseDir: base})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Stop(ctx, w)
		if err != nil || res.Route != "/end_profile" {
			t.Fatalf("%s: stop %+v, %v", id, res, err)
		}
		files, err := w.Wait(ctx, fast)
		if err != nil || len(ranksOf(files)) != 2 {
			t.Fatalf("%s: files %+v, %v", id, files, err)
		}
	}
	if n := s.count("/stop_profile"); n != 1 {
		t.Errorf("/stop_profile tried %d times, want once", n)
	}
}

// Two windows in a row: each its own dir, each with only its own traces; a window id
// used again is refused before anything is sent.
func TestTwoWindowsInARow(t *testing.T) {
	s := newFakeSGLang(t, false)
	c := testClient(t, s.srv.URL, SGLang)
	ctx := ctxT(t)
	base := t.TempDir()
	seen := map[string]bool{}
	for _, id := range []string{"win-1", "win-2"} {
		w, err := c.Start(ctx, Request{ID: id, BaseDir: base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stop(ctx, w); err != nil {
			t.Fatal(err)
		}
		files, err := w.Wait(ctx, WaitOptions{Interval: fast.Interval, Settle: fast.Settle, Expected: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 {
			t.Fatalf("%s: %+v", id, files)
		}
		for _, f := range files {
			if filepath.Dir(f.Path) != filepath.Join(base, id) || seen[filepath.Base(f.Path)] {
				t.Errorf("%s: file %s is not this window's alone", id, f.Path)
			}
			seen[filepath.Base(f.Path)] = true
		}
	}
	before := s.total()
	_, err := c.Start(ctx, Request{ID: "win-1", BaseDir: base})
	wantKind(t, err, ErrInvalid, "already exists", "new window id")
	if s.total() != before {
		t.Error("a start with a used window id reached the server")
	}
}

// Every field of SGLang's /start_profile goes out as SGLang names it; unset ones do not
// go out at all.
func TestSGLangFullBody(t *testing.T) {
	s := newFakeSGLang(t, false)
	c := testClient(t, s.srv.URL, SGLang)
	ctx := ctxT(t)
	yes, no := true, false
	w, err := c.Start(ctx, Request{ID: "full", BaseDir: t.TempDir(), StartStep: 100, NumSteps: 2,
		Activities: []Activity{CPU, GPU, MEM, CUDAProfiler}, ProfileByStage: true, ProfileStages: []string{"prefill", "decode"},
		WithStack: &no, RecordShapes: &yes, MergeProfiles: true, ProfilePrefix: "exp-7", ProfileID: "1763900000.5"})
	if err != nil {
		t.Fatal(err)
	}
	got := s.lastBody()
	want := map[string]any{"output_dir": w.Dir, "start_step": 100.0, "num_steps": 2.0,
		"activities": []any{"CPU", "GPU", "MEM", "CUDA_PROFILER"}, "profile_by_stage": true,
		"profile_stages": []any{"prefill", "decode"}, "with_stack": false, "record_shapes": true,
		"merge_profiles": true, "profile_prefix": "exp-7", "profile_id": "1763900000.5"}
	if len(got) != len(want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	for k, v := range want {
		if !equalJSON(got[k], v) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Merged: Wait also waits for merged-{id}.
	files, err := w.Wait(ctx, WaitOptions{Interval: fast.Interval, Settle: fast.Settle, Expected: 2})
	if err != nil {
		t.Fatal(err)
	}
	var merged int
	for _, f := range files {
		if f.Kind == MergedTrace {
			merged++
		} else if f.Kind != RankTrace || f.Rank.Prefix != "exp-7" || f.Rank.ProfileID != "1763900000.5" {
			t.Errorf("file %+v", f)
		}
	}
	if merged != 1 {
		t.Errorf("merged traces: %d in %+v", merged, files)
	}
}

func equalJSON(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		if len(as) != len(bs) {
			return false
		}
		for i := range as {
			if as[i] != bs[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

// What a flavor cannot do is refused before anything is sent: an unknown activity
// (SGLang would ignore it and answer 200), steps or a dir for vLLM, SGLang-only fields
// for trtllm-serve. No dir is made either.
func TestRefusedBeforeSending(t *testing.T) {
	s := newFakeSGLang(t, false)
	v := newFakeVLLM(t, true, t.TempDir())
	x := newFakeTRTLLM(t)
	yes := true
	for _, tc := range []struct {
		name    string
		fake    *fakeServer
		flavor  Flavor
		req     Request
		kind    error
		mention string
	}{
		{"sglang unknown activity", s.fakeServer, SGLang, Request{Activities: []Activity{CPU, "TPU"}}, ErrUnsupported, `"TPU"`},
		{"sglang lower-case activity", s.fakeServer, SGLang, Request{Activities: []Activity{"gpu"}}, ErrUnsupported, "CPU GPU MEM RPD CUDA_PROFILER"},
		{"sglang empty activities", s.fakeServer, SGLang, Request{Activities: []Activity{}}, ErrInvalid, "nil"},
		{"sglang twice", s.fakeServer, SGLang, Request{Activities: []Activity{CPU, CPU}}, ErrInvalid, "twice"},
		{"sglang negative steps", s.fakeServer, SGLang, Request{NumSteps: -1}, ErrInvalid, "negative"},
		{"sglang profile id with dash", s.fakeServer, SGLang, Request{ProfileID: "a-b"}, ErrInvalid, "split on '-'"},
		{"sglang server dir", s.fakeServer, SGLang, Request{ServerDir: "/tmp/x"}, ErrUnsupported, "vLLM"},
		{"trtllm MEM", x.fakeServer, TRTLLM, Request{Activities: []Activity{MEM}}, ErrUnsupported, "CPU GPU CUDA_PROFILER"},
		{"trtllm by stage", x.fakeServer, TRTLLM, Request{ProfileByStage: true, WithStack: &yes}, ErrUnsupported, "profile_by_stage, with_stack"},
		{"vllm steps", v.fakeServer, VLLM, Request{NumSteps: 5}, ErrUnsupported, "delay_iterations, max_iterations"},
		{"vllm start step", v.fakeServer, VLLM, Request{StartStep: 5}, ErrUnsupported, "--profiler-config"},
		{"vllm activities", v.fakeServer, VLLM, Request{Activities: []Activity{CPU}}, ErrUnsupported, "torch or cuda"},
		{"vllm base dir", v.fakeServer, VLLM, Request{BaseDir: "/tmp/x"}, ErrUnsupported, "torch_profiler_dir"},
		{"vllm prefix", v.fakeServer, VLLM, Request{ProfilePrefix: "p"}, ErrUnsupported, "profile_prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			req := tc.req
			req.ID = "w"
			if tc.flavor != VLLM && req.BaseDir == "" {
				req.BaseDir = base
			}
			before := tc.fake.total()
			_, err := testClient(t, tc.fake.srv.URL, tc.flavor).Start(ctxT(t), req)
			wantKind(t, err, tc.kind, tc.mention)
			if tc.fake.total() != before {
				t.Error("the request reached the server")
			}
			if entries, _ := os.ReadDir(base); len(entries) != 0 {
				t.Errorf("a refused request made %v", entries)
			}
		})
	}
	for _, tc := range []struct{ id, base string }{{"", "/tmp"}, {"../up", "/tmp"}, {".hidden", "/tmp"}, {"a/b", "/tmp"}, {"ok", "relative/dir"}} {
		_, err := testClient(t, s.srv.URL, SGLang).Start(ctxT(t), Request{ID: tc.id, BaseDir: tc.base})
		wantKind(t, err, ErrInvalid)
	}
	if s.total() != 0 {
		t.Errorf("invalid requests reached SGLang %d times", s.total())
	}
}

// vLLM without --profiler-config has no profiling routes: the 404 says so and how to fix it.
func TestVLLMWithoutProfilerConfig(t *testing.T) {
	v := newFakeVLLM(t, false, t.TempDir())
	c := testClient(t, v.srv.URL, VLLM)
	_, err := c.Start(ctxT(t), Request{ID: "w"})
	wantKind(t, err, ErrNotFound, "without --profiler-config", `"profiler": "torch"`, `"torch_profiler_dir"`, `"profiler": "cuda"`)
	_, err = c.Stop(ctxT(t), nil)
	wantKind(t, err, ErrNotFound, "--profiler-config")
}

// A vLLM window: no body, files in the server's own dir, and only the window's new files
// count, the API process's trace told apart from the ranks'.
func TestVLLMWindow(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "dp0_pp0_tp0_dcp0_ep0_rank0.1700000000000000000.pt.trace.json.gz")
	if err := os.WriteFile(old, []byte("an earlier window"), 0o640); err != nil {
		t.Fatal(err)
	}
	v := newFakeVLLM(t, true, dir)
	c := testClient(t, v.srv.URL, VLLM)
	ctx := ctxT(t)
	w, err := c.Start(ctx, Request{ID: "v1", ServerDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Shared || w.Dir != dir {
		t.Fatalf("window %+v", w)
	}
	if _, err := c.Stop(ctx, w); err != nil {
		t.Fatal(err)
	}
	files, err := w.Wait(ctx, WaitOptions{Interval: fast.Interval, Settle: fast.Settle, Expected: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[0].Kind != RankTrace || files[1].Kind != RankTrace || files[2].Kind != FrontendTrace {
		t.Fatalf("files %+v", files)
	}
	for i, f := range files[:2] {
		if f.Path == old || f.Rank.TP != i || f.Rank.Rank != i || f.Rank.DCP != 0 {
			t.Errorf("rank file %d: %+v", i, f)
		}
	}
	// Without ServerDir the window's files cannot be watched.
	w2, err := c.Start(ctx, Request{ID: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w2.Wait(ctx, fast)
	wantKind(t, err, ErrUnsupported, "ServerDir")
	if _, err := c.Stop(ctx, w2); err != nil {
		t.Fatal(err)
	}
}

// trtllm-serve: a steps window ends by itself; a second start is a 409; a stop with
// nothing running is ErrNotRunning.
func TestTRTLLMWindow(t *testing.T) {
	x := newFakeTRTLLM(t)
	c := testClient(t, x.srv.URL, TRTLLM)
	ctx := ctxT(t)
	base := t.TempDir()
	w, err := c.Start(ctx, Request{ID: "t1", BaseDir: base, NumSteps: 3, StartStep: 10, Activities: []Activity{CPU, GPU}})
	if err != nil {
		t.Fatal(err)
	}
	body := x.lastBody()
	if len(body) != 4 || body["start_step"] != 10.0 || body["num_steps"] != 3.0 || body["output_dir"] != w.Dir {
		t.Fatalf("body %v", body)
	}
	_, err = c.Start(ctx, Request{ID: "t2", BaseDir: base})
	wantKind(t, err, ErrAlreadyRunning, "HTTP 409")
	files, err := w.Wait(ctx, WaitOptions{Interval: fast.Interval, Settle: fast.Settle, Expected: 2})
	if err != nil || len(ranksOf(files)) != 2 || files[1].Rank.Rank != 1 {
		t.Fatalf("files %+v, %v", files, err)
	}
	res, err := c.Stop(ctx, w)
	if err != nil || !res.AlreadyStopped {
		t.Fatalf("stop after num_steps: %+v, %v", res, err)
	}
	_, err = c.Stop(ctx, nil)
	wantKind(t, err, ErrNotRunning)
}

// CUDA_PROFILER alone writes no trace: Wait says so instead of waiting forever.
func TestCUDAProfilerWindowHasNoTraces(t *testing.T) {
	s := newFakeSGLang(t, false)
	c := testClient(t, s.srv.URL, SGLang)
	w, err := c.Start(ctxT(t), Request{ID: "nsys", BaseDir: t.TempDir(), Activities: []Activity{CUDAProfiler}})
	if err != nil {
		t.Fatal(err)
	}
	if w.ExpectsTraces() {
		t.Error("a CUDA_PROFILER window expects traces")
	}
	_, err = w.Wait(ctxT(t), fast)
	wantKind(t, err, ErrUnsupported, "nsys")
	if _, err := c.Stop(ctxT(t), w); err != nil {
		t.Fatal(err)
	}
}

// A server that is gone: ErrServerDown, and the window's dir is not left behind.
func TestServerDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	base := t.TempDir()
	_, err := testClient(t, down.URL, SGLang).Start(ctxT(t), Request{ID: "w", BaseDir: base})
	wantKind(t, err, ErrServerDown)
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// A stop that outlasts StopTimeout: ErrTimeout, saying the traces may still come.
func TestStopTimeout(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start_profile" {
			plain(w, 200, "Start profiling.\n")
			return
		}
		select { // every rank still writing
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	c, err := New(slow.URL, SGLang, Options{StopTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Start(ctxT(t), Request{ID: "w", BaseDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stop(ctxT(t), w)
	wantKind(t, err, ErrTimeout, "may still be writing", w.Dir)
}

// Answers are read with a limit, and what an error quotes of them is short and printable.
func TestBoundedAnswers(t *testing.T) {
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		chunk := []byte(strings.Repeat("\x1b[31mno\n", 1024))
		for i := 0; i < 1024; i++ { // 9 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer huge.Close()
	_, err := testClient(t, huge.URL, TRTLLM).Start(ctxT(t), Request{ID: "w", BaseDir: t.TempDir()})
	wantKind(t, err, ErrRefused, "HTTP 502")
	if len(err.Error()) > 600 || strings.ContainsRune(err.Error(), '\x1b') {
		t.Errorf("error quotes too much: %d bytes: %q", len(err.Error()), err)
	}
}
