package serverprof

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The fakes below reproduce what the servers' code does (see flavor.go and window.go for
// where each behaviour was read), small enough to read in one go:
//
//   - SGLang: plain-text answers; a refusal ("already in progress", "not in progress") is
//     an exception the web framework answers with a bare "Internal Server Error" 500;
//     unknown activities are ignored with a 200; num_steps ends the profile by itself
//     after N steps, writing one trace per TP rank; the stop answers only after every
//     rank wrote its trace; an older variant has /end_profile only.
//   - vLLM: /start_profile and /stop_profile exist only with --profiler-config (404 and
//     FastAPI's {"detail":"Not Found"} otherwise), take no body, answer an empty 200;
//     traces land in the server's own dir, one per rank plus the API process's.
//   - trtllm-serve: JSON answers, 409 on a second start.

// fakeServer is what the three fakes share: request counts, the recorded bodies, and
// the goroutines that write traces after num_steps.
type fakeServer struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
	bodies []map[string]any
	wg     sync.WaitGroup
	quit   chan struct{}

	// how traces are written: ranks, each in chunks, with a pause between chunks.
	ranks      int
	chunks     int
	chunkBytes int
	chunkEvery time.Duration
	stepEvery  time.Duration
}

func newFake(t *testing.T, handler func(f *fakeServer) http.Handler) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, counts: map[string]int{}, quit: make(chan struct{}),
		ranks: 2, chunks: 3, chunkBytes: 4096, chunkEvery: 15 * time.Millisecond, stepEvery: 5 * time.Millisecond}
	h := handler(f)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.counts[r.URL.Path]++
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(f.quit)
		f.srv.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[path]
}

func (f *fakeServer) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return n
}

func (f *fakeServer) lastBody() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		return nil
	}
	return f.bodies[len(f.bodies)-1]
}

// readBody records a JSON body (nil for none).
func (f *fakeServer) readBody(r *http.Request) map[string]any {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			f.t.Errorf("%s: body %q is not JSON: %v", r.URL.Path, b, err)
		}
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, m)
	f.mu.Unlock()
	return m
}

// writeTraces writes names in dir, all at once, each in chunks: files that grow, then
// settle, as torch's gzip export does.
func (f *fakeServer) writeTraces(dir string, names []string) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		f.t.Errorf("fake: %v", err)
		return
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fh, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
			if err != nil {
				f.t.Errorf("fake: %v", err)
				return
			}
			defer fh.Close()
			chunk := make([]byte, f.chunkBytes)
			for i := 0; i < f.chunks; i++ {
				if i > 0 {
					time.Sleep(f.chunkEvery)
				}
				if _, err := fh.Write(chunk); err != nil {
					f.t.Errorf("fake: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// afterSteps runs fn once n steps passed, unless the test ends first.
func (f *fakeServer) afterSteps(n int, fn func()) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select {
		case <-time.After(time.Duration(n) * f.stepEvery):
			fn()
		case <-f.quit:
		}
	}()
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func jsonReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	jsonReply(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
}

// fakeSGLang is SGLang's http_server. endProfileOnly makes the older variant whose stop
// route is /end_profile.
type fakeSGLang struct {
	*fakeServer
	endProfileOnly bool

	smu     sync.Mutex
	running bool
	dir     string
	names   []string
	merge   bool
	id      string
}

func newFakeSGLang(t *testing.T, endProfileOnly bool) *fakeSGLang {
	s := &fakeSGLang{endProfileOnly: endProfileOnly}
	s.fakeServer = newFake(t, func(f *fakeServer) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /get_server_info", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]any{"model_path": "/models/tiny", "tp_size": f.ranks, "dp_size": 1, "pp_size": 1,
				"ep_size": 1, "enable_dp_attention": false, "version": "0.5.5", "internal_states": []any{map[string]any{}}})
		})
		mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]any{"object": "list", "data": []any{map[string]any{"id": "tiny", "object": "model", "owned_by": "sglang"}}})
		})
		mux.HandleFunc("/start_profile", s.start)
		stop := "/stop_profile"
		if endProfileOnly {
			stop = "/end_profile"
		}
		mux.HandleFunc(stop, s.stop)
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
		return mux
	})
	return s
}

func (s *fakeSGLang) start(w http.ResponseWriter, r *http.Request) {
	body := s.readBody(r)
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.running {
		// RuntimeError("Profiling is already in progress. Call /stop_profile first.")
		plain(w, 500, "Internal Server Error")
		return
	}
	s.running = true
	s.dir, _ = body["output_dir"].(string)
	prefix, _ := body["profile_prefix"].(string)
	s.id, _ = body["profile_id"].(string)
	if s.id == "" {
		s.id = fmt.Sprintf("%.6f", float64(time.Now().UnixMicro())/1e6)
	}
	s.merge, _ = body["merge_profiles"].(bool)
	s.names = nil
	for tp := range s.ranks {
		name := fmt.Sprintf("%s-TP-%d.trace.json.gz", s.id, tp)
		if prefix != "" {
			name = prefix + "-" + name
		}
		s.names = append(s.names, name)
	}
	if n, ok := body["num_steps"].(float64); ok && n > 0 {
		dir, names, merge, id := s.dir, s.names, s.merge, s.id
		s.afterSteps(int(n), func() {
			s.writeAll(dir, names, merge, id)
			s.smu.Lock()
			s.running = false
			s.smu.Unlock()
		})
	}
	plain(w, 200, "Start profiling.\n")
}

func (s *fakeSGLang) writeAll(dir string, names []string, merge bool, id string) {
	s.writeTraces(dir, names)
	if merge {
		s.writeTraces(dir, []string{"merged-" + id + ".trace.json.gz"})
	}
}

func (s *fakeSGLang) stop(w http.ResponseWriter, r *http.Request) {
	s.smu.Lock()
	if !s.running {
		s.smu.Unlock()
		// RuntimeError("Profiling is not in progress. Call /start_profile first.")
		plain(w, 500, "Internal Server Error")
		return
	}
	dir, names, merge, id := s.dir, s.names, s.merge, s.id
	s.smu.Unlock()
	s.writeAll(dir, names, merge, id) // the answer waits for every rank's trace
	s.smu.Lock()
	s.running = false
	s.smu.Unlock()
	plain(w, 200, "Stop profiling. This will take some time.\n")
}

// fakeVLLM is vLLM's API server; withProfiler is --profiler-config; dir its
// torch_profiler_dir.
type fakeVLLM struct {
	*fakeServer
	dir string

	smu    sync.Mutex
	active bool
}

func newFakeVLLM(t *testing.T, withProfiler bool, dir string) *fakeVLLM {
	v := &fakeVLLM{dir: dir}
	v.fakeServer = newFake(t, func(f *fakeServer) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]any{"object": "list", "data": []any{map[string]any{"id": "tiny", "object": "model", "owned_by": "vllm", "max_model_len": 2048}}})
		})
		mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]string{"version": "0.13.0"})
		})
		if withProfiler {
			mux.HandleFunc("POST /start_profile", v.start)
			mux.HandleFunc("POST /stop_profile", v.stop)
		}
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
		return mux
	})
	return v
}

func (v *fakeVLLM) start(w http.ResponseWriter, r *http.Request) {
	if b := v.readBody(r); b != nil {
		v.t.Errorf("vLLM /start_profile got a body: %v", b)
	}
	v.smu.Lock()
	v.active = true // a second start while active is ignored, still 200
	v.smu.Unlock()
	w.WriteHeader(200)
}

func (v *fakeVLLM) stop(w http.ResponseWriter, r *http.Request) {
	v.smu.Lock()
	active := v.active
	v.active = false
	v.smu.Unlock()
	if active {
		ns := time.Now().UnixNano()
		var names []string
		for g := range v.ranks {
			names = append(names, fmt.Sprintf("dp0_pp0_tp%d_dcp0_ep0_rank%d.%d.pt.trace.json.gz", g, g, ns+int64(g)))
		}
		names = append(names, fmt.Sprintf("gpu-host_4242.async_llm.%d.pt.trace.json.gz", ns))
		v.writeTraces(v.dir, names)
	}
	w.WriteHeader(200)
}

// fakeTRTLLM is trtllm-serve.
type fakeTRTLLM struct {
	*fakeServer

	smu     sync.Mutex
	running bool
	dir     string
}

func newFakeTRTLLM(t *testing.T) *fakeTRTLLM {
	x := &fakeTRTLLM{}
	x.fakeServer = newFake(t, func(f *fakeServer) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]any{"object": "list", "data": []any{map[string]any{"id": "tiny", "object": "model", "owned_by": "tensorrt_llm"}}})
		})
		mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { jsonReply(w, 200, map[string]string{"version": "1.3.0"}) })
		mux.HandleFunc("GET /server_info", func(w http.ResponseWriter, r *http.Request) {
			jsonReply(w, 200, map[string]any{"disaggregated_params": nil})
		})
		mux.HandleFunc("POST /start_profile", x.start)
		mux.HandleFunc("POST /stop_profile", x.stop)
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
		return mux
	})
	return x
}

func (x *fakeTRTLLM) names() []string {
	var names []string
	for r := range x.ranks {
		names = append(names, fmt.Sprintf("trace-rank-%d.json", r))
	}
	return names
}

func (x *fakeTRTLLM) start(w http.ResponseWriter, r *http.Request) {
	body := x.readBody(r)
	x.smu.Lock()
	defer x.smu.Unlock()
	if x.running {
		jsonReply(w, http.StatusConflict, map[string]string{"message": "Profiling is already in progress"})
		return
	}
	x.running = true
	x.dir, _ = body["output_dir"].(string)
	if n, ok := body["num_steps"].(float64); ok && n > 0 {
		dir := x.dir
		x.afterSteps(int(n), func() {
			x.writeTraces(dir, x.names())
			x.smu.Lock()
			x.running = false
			x.smu.Unlock()
		})
	}
	jsonReply(w, 200, map[string]string{"message": "Profiling started"})
}

func (x *fakeTRTLLM) stop(w http.ResponseWriter, r *http.Request) {
	x.smu.Lock()
	running, dir := x.running, x.dir
	x.running = false
	x.smu.Unlock()
	if !running {
		jsonReply(w, http.StatusConflict, map[string]string{"message": "Profiling is not in progress"})
		return
	}
	x.writeTraces(dir, x.names())
	jsonReply(w, 200, map[string]string{"message": "Profiling stopped"})
}
