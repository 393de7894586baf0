package torch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// fakeVLLM stands in for vLLM run with --profiler-config '{"profiler": "torch", ...}' (no
// vLLM can run here): its /v1/models names it, /start_profile and /stop_profile take no
// body and answer an empty 200, and the stop writes one trace per rank into the
// torch_profiler_dir under vLLM's names (the fixture's real H100 traces).
type fakeVLLM struct {
	t      *testing.T
	dir    string
	mu     sync.Mutex
	bodies []string
}

func (f *fakeVLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/models":
		_, _ = io.WriteString(w, `{"object": "list", "data": [{"id": "m", "owned_by": "vllm"}]}`)
	case "/start_profile":
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
	case "/stop_profile":
		for rank, tp := range []string{"0", "1"} {
			name := "dp0_pp0_tp" + tp + "_dcp0_ep0_rank" + tp + ".176390000012345678" + tp + ".pt.trace.json.gz"
			if err := os.WriteFile(filepath.Join(f.dir, name), fixture(f.t, fixtureRank(tp)), 0o644); err != nil {
				f.t.Errorf("rank %d: %v", rank, err)
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// TestVLLMWindow: vLLM takes no steps, activities or SGLang options in /start_profile and
// no output dir per request: the backend refuses what it cannot do (nothing sent), needs
// the server's torch_profiler_dir, takes from it only the window's new traces, and merges
// them.
func TestVLLMWindow(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "dp0_pp0_tp0_dcp0_ep0_rank0.1000000000000000000.pt.trace.json.gz")
	if err := os.WriteFile(old, []byte("an earlier window's"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &fakeVLLM{t: t, dir: dir}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	b := New("test")
	b.Poll, b.Settle = 20*time.Millisecond, 200*time.Millisecond // vLLM's 200 says nothing of the traces: they settle
	if err := b.Configure(context.Background(), shared.Target{ServerURL: hs.URL}); err != nil {
		t.Fatal(err)
	}
	w := newWindow(t, "v1")
	if err := b.Start(context.Background(), w); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), VLLMDirEnv) {
		t.Fatalf("Start without vLLM's dir = %v, want ErrUnsupported naming %s", err, VLLMDirEnv)
	}
	b.VLLMDir = dir
	for name, mod := range map[string]func(*shared.Window){
		"steps":      func(w *shared.Window) { w.Steps = 5 },
		"mem":        func(w *shared.Window) { w.Options = map[string]string{OptMem: "true"} },
		"with_stack": func(w *shared.Window) { w.Options = map[string]string{OptWithStack: "false"} },
	} {
		w := newWindow(t, "refused")
		mod(&w)
		if err := b.Start(context.Background(), w); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "vLLM") {
			t.Errorf("%s on vLLM: Start = %v, want ErrUnsupported", name, err)
		}
	}
	if len(srv.bodies) != 0 {
		t.Fatalf("refused windows reached the server: %q", srv.bodies)
	}

	if err := b.Start(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(srv.bodies, []string{""}) {
		t.Errorf("start bodies = %q, want one empty", srv.bodies)
	}
	res, err := b.Stop(context.Background(), w, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 2 {
		t.Fatalf("artifacts %v, want the two new rank traces", res.Artifacts)
	}
	if _, err := os.Stat(old); err != nil {
		t.Errorf("the earlier window's trace in the shared dir: %v", err)
	}
	fin, err := b.Finalize(context.Background(), w, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fin.Artifacts, "merged-v1.trace.json.gz") {
		t.Errorf("artifacts %v: vLLM's ranks carry their own times, so the merged trace is named after the window", fin.Artifacts)
	}
	s := readSummary(t, w.Dir)
	if len(s.Ranks) != 2 || s.SlowestRank != "TP01" {
		t.Errorf("summary: %d ranks, slowest %q; want 2, TP01", len(s.Ranks), s.SlowestRank)
	}
}
