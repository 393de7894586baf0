package demotarget

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/gztest"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/nsys/procs"

	"go.uber.org/goleak"
)

// The test binary doubles as the rank worker: Run re-executes it with "demo-worker".
// With serveEnv set it is a whole demo server (clock_test.go).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == workerSubcmd {
		os.Exit(testWorkerMain(os.Args[2:]))
	}
	if ready := os.Getenv(serveEnv); ready != "" {
		os.Exit(testServerMain(ready))
	}
	goleak.VerifyTestMain(m)
}

func testWorkerMain(args []string) int {
	fs := flag.NewFlagSet(workerSubcmd, flag.ContinueOnError)
	rank := fs.Int("rank", -1, "rank")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := RunWorker(ctx, *rank, WorkerOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Generous: the test machine is small and shared.
const deadline = 30 * time.Second

type testServer struct {
	t      *testing.T
	url    string
	ready  string
	out    *nsystest.Buffer
	cancel context.CancelFunc
	done   chan error
	failOK bool // the test makes Run fail on purpose
}

// startServer runs the demo server in this process with real worker processes, fast steps
// and light CPU work.
func startServer(t *testing.T, ranks int) *testServer {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{t: t, ready: filepath.Join(t.TempDir(), "ready"), out: &nsystest.Buffer{},
		cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- Run(ctx, Options{Port: 0, Ranks: ranks, ReadyFile: s.ready, Stdout: s.out, Stderr: s.out,
			WorkerCommand: []string{exe, workerSubcmd}, StepWork: 2 * time.Millisecond, StepGap: 3 * time.Millisecond})
	}()
	t.Cleanup(func() {
		if err := s.stop(); err != nil && !s.failOK {
			t.Errorf("Run: %v", err)
		}
	})
	poll(t, "ready file", func() bool {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("Run ended before ready: %v\n%s", err, s.out)
		default:
		}
		b, err := os.ReadFile(s.ready)
		s.url = strings.TrimSpace(string(b))
		return err == nil
	})
	return s
}

// stop cancels Run and returns its result; later calls return the same.
func (s *testServer) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(deadline):
		return errors.New("Run did not return after cancel")
	}
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: deadline}

func (s *testServer) do(method, path, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *testServer) expect(method, path, body string, wantCode int, wantBody string) {
	s.t.Helper()
	code, got := s.do(method, path, body)
	if code != wantCode || (wantBody != "" && got != wantBody) {
		s.t.Fatalf("%s %s %s: got %d %q, want %d %q\nlog:\n%s", method, path, body, code, got, wantCode, wantBody, s.out)
	}
}

func (s *testServer) forwardCt() int64 {
	_, body := s.do("GET", "/get_server_info", "")
	var info struct {
		InternalStates []struct {
			ForwardCt int64 `json:"forward_ct"`
		} `json:"internal_states"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || len(info.InternalStates) == 0 {
		s.t.Fatalf("get_server_info: %v %s", err, body)
	}
	return info.InternalStates[0].ForwardCt
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	startOK    = "Start profiling.\n"
	stopOK     = "Stop profiling. This will take some time.\n"
	notRunning = "Profiling is not in progress. Call /start_profile first."
	running    = "Profiling is already in progress. Call /stop_profile first."
)

// kinetoTrace is what the tests read back from a trace file.
type kinetoTrace struct {
	SchemaVersion       int   `json:"schemaVersion"`
	BaseTimeNanoseconds int64 `json:"baseTimeNanoseconds"`
	DeviceProperties    []struct {
		Name string `json:"name"`
	} `json:"deviceProperties"`
	DistributedInfo struct {
		Rank      int `json:"rank"`
		WorldSize int `json:"world_size"`
	} `json:"distributedInfo"`
	TraceEvents []struct {
		Ph   string          `json:"ph"`
		Cat  string          `json:"cat"`
		Name string          `json:"name"`
		TS   float64         `json:"ts"`
		PID  json.RawMessage `json:"pid"`
		TID  json.RawMessage `json:"tid"`
		Dur  float64         `json:"dur"`
		Args map[string]any  `json:"args"`
	} `json:"traceEvents"`
}

func readTrace(t *testing.T, path string) kinetoTrace {
	t.Helper()
	return gztest.ReadJSON[kinetoTrace](t, path)
}

// count returns how many events have the category (and the name, when given).
func (tr kinetoTrace) count(cat, name string) int {
	n := 0
	for _, e := range tr.TraceEvents {
		if e.Cat == cat && (name == "" || e.Name == name) {
			n++
		}
	}
	return n
}

func (tr kinetoTrace) kernelTime() float64 {
	var sum float64
	for _, e := range tr.TraceEvents {
		if e.Cat == "kernel" {
			sum += e.Dur
		}
	}
	return sum
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// traces returns the *.trace.json.gz names in dir.
func traces(t *testing.T, dir string) []string {
	var out []string
	for _, n := range listDir(t, dir) {
		if strings.HasSuffix(n, ".trace.json.gz") {
			out = append(out, n)
		}
	}
	return out
}

// childWorkers returns the pids of live demo-worker processes whose parent is this process.
func childWorkers(t *testing.T) []int {
	t.Helper()
	desc, err := procs.Default.Descendants(os.Getpid())
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	var pids []int
	for _, p := range desc {
		if p.PPID != os.Getpid() || p.State == "Z" {
			continue
		}
		if argv, err := procs.Default.Cmdline(p.PID); err == nil && slices.Contains(argv, workerSubcmd) {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

func TestServerAPI(t *testing.T) {
	s := startServer(t, 2)

	t.Run("health", func(t *testing.T) {
		s.t = t
		s.expect("GET", "/health", "", 200, "")
		code, body := s.do("GET", "/health", "")
		if code != 200 || body != "" {
			t.Fatalf("health: %d %q, want 200 and an empty body", code, body)
		}
	})
	t.Run("server info", func(t *testing.T) {
		s.t = t
		code, body := s.do("GET", "/get_server_info", "")
		var info map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &info) != nil {
			t.Fatalf("get_server_info: %d %s", code, body)
		}
		if info["model_path"] != ModelPath || info["tp_size"] != float64(2) || info["version"] == "" {
			t.Fatalf("get_server_info: %v", info)
		}
	})
	t.Run("end_profile is 404", func(t *testing.T) {
		s.t = t
		s.expect("POST", "/end_profile", "{}", 404, `{"detail":"Not Found"}`+"\n")
		s.expect("DELETE", "/start_profile", "", 405, "")
	})
	t.Run("ranks are child processes", func(t *testing.T) {
		s.t = t
		pids := childWorkers(t)
		if len(pids) != 2 || pids[0] == pids[1] || slices.Contains(pids, os.Getpid()) {
			t.Fatalf("worker pids %v, want 2 distinct children of %d", pids, os.Getpid())
		}
	})
	t.Run("wrong states answer 500", func(t *testing.T) {
		s.t = t
		s.expect("POST", "/stop_profile", "", 500, notRunning)
		dir := t.TempDir()
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","activities":["CUDA_PROFILER"]}`, 200, startOK)
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`"}`, 500, running)
		s.expect("POST", "/stop_profile", "", 200, stopOK)
		s.expect("POST", "/stop_profile", "", 500, notRunning)
		if got := traces(t, dir); len(got) != 0 {
			t.Fatalf("CUDA_PROFILER alone wrote torch traces: %v", got)
		}
		if !strings.Contains(s.out.String(), "cudaProfilerStart is unavailable without CUDA") || !strings.Contains(s.out.String(), "num_steps 0)") {
			t.Fatalf("no CUDA_PROFILER log line:\n%s", s.out)
		}
		if !strings.Contains(s.out.String(), "cudaProfilerStop skipped after") {
			t.Fatalf("no CUDA_PROFILER stop line:\n%s", s.out)
		}
	})
	t.Run("start stop cycle writes Kineto traces per rank", func(t *testing.T) {
		s.t = t
		dir := filepath.Join(t.TempDir(), "made", "by", "the", "server")
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","activities":["CPU","GPU","NOPE"],
			"merge_profiles":true,"profile_prefix":"demo","record_shapes":true}`, 200, startOK)
		// A completion takes a prefill and 3 decode steps, so the window has steps in it.
		code, body := s.do("POST", "/v1/completions", `{"model":"x","prompt":"profile me please","max_tokens":3}`)
		if code != 200 || !strings.Contains(body, `"object":"text_completion"`) {
			t.Fatalf("completions: %d %s", code, body)
		}
		s.expect("POST", "/stop_profile", "{}", 200, stopOK)

		names := traces(t, dir)
		re := regexp.MustCompile(`^demo-(\d+\.\d{6})-TP-([01])\.trace\.json\.gz$`)
		var id string
		ranks := map[string]bool{}
		for _, n := range names {
			if m := re.FindStringSubmatch(n); m != nil {
				id = m[1]
				ranks[m[2]] = true
			}
		}
		if len(ranks) != 2 || !slices.Contains(names, "merged-"+id+".trace.json.gz") || len(names) != 3 {
			t.Fatalf("files %v: want demo-ID-TP-0, demo-ID-TP-1 and merged-ID", names)
		}
		var busy [2]float64
		for rank := range 2 {
			tr := readTrace(t, filepath.Join(dir, fmt.Sprintf("demo-%s-TP-%d.trace.json.gz", id, rank)))
			if tr.SchemaVersion != 1 || tr.DistributedInfo.Rank != rank || tr.DistributedInfo.WorldSize != 2 ||
				len(tr.DeviceProperties) != 1 || tr.BaseTimeNanoseconds == 0 {
				t.Fatalf("rank %d header: %+v", rank, tr)
			}
			steps := tr.count("user_annotation", "demo::step")
			if steps < 4 || tr.count("cpu_op", "aten::mm") == 0 || tr.count("process_name", "") != 0 {
				t.Fatalf("rank %d: %d steps, %d aten::mm", rank, steps, tr.count("cpu_op", "aten::mm"))
			}
			kernels := 0
			for _, e := range tr.TraceEvents {
				if e.Cat == "kernel" {
					kernels++
					if string(e.PID) != "0" || string(e.TID) != "7" || e.Args["grid"] == nil || e.Args["stream"] != float64(7) {
						t.Fatalf("rank %d kernel event %+v", rank, e)
					}
				}
				if e.Cat == "cpu_op" && e.Args["Input Dims"] == nil {
					t.Fatalf("record_shapes: cpu_op without Input Dims: %+v", e)
				}
			}
			if kernels == 0 || tr.count("kernel", "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)") == 0 {
				t.Fatalf("rank %d: %d kernels, no NCCL all-reduce", rank, kernels)
			}
			busy[rank] = tr.kernelTime() / float64(steps)
		}
		t.Logf("GPU time per step: rank 0 %.0f us, rank 1 %.0f us", busy[0], busy[1])
		merged := readTrace(t, filepath.Join(dir, "merged-"+id+".trace.json.gz"))
		if len(merged.TraceEvents) == 0 || len(merged.DeviceProperties) != 2 || !strings.HasPrefix(string(merged.TraceEvents[0].PID), `"[TP00] `) {
			t.Fatalf("merged trace: %d events, %d devices", len(merged.TraceEvents), len(merged.DeviceProperties))
		}
	})
	t.Run("num_steps stops by itself", func(t *testing.T) {
		s.t = t
		dir := t.TempDir()
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","num_steps":3}`, 200, startOK)
		poll(t, "2 traces", func() bool { return len(traces(t, dir)) == 2 })
		s.expect("POST", "/stop_profile", "", 500, notRunning)
		for _, n := range traces(t, dir) {
			tr := readTrace(t, filepath.Join(dir, n))
			if got := tr.count("user_annotation", "demo::step"); got != 3 {
				t.Fatalf("%s: %d steps, want num_steps=3", n, got)
			}
			if tr.count("kernel", "") == 0 { // default activities are CPU and GPU
				t.Fatalf("%s: no kernels with default activities", n)
			}
		}
	})
	t.Run("CUDA_PROFILER num_steps stops by itself", func(t *testing.T) {
		s.t = t
		dir := t.TempDir()
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","num_steps":4,"activities":["CUDA_PROFILER"]}`, 200, startOK)
		poll(t, "the range's end", func() bool {
			return strings.Contains(s.out.String(), "cudaProfilerStop skipped after 4 profiled steps")
		})
		if !strings.Contains(s.out.String(), "output_dir "+dir+", num_steps 4)") {
			t.Fatalf("no start line with num_steps:\n%s", s.out)
		}
		s.expect("POST", "/stop_profile", "", 500, notRunning) // as SGLang after num_steps
		if got := traces(t, dir); len(got) != 0 {
			t.Fatalf("CUDA_PROFILER alone wrote torch traces: %v", got)
		}
	})
	t.Run("start_step is absolute", func(t *testing.T) {
		s.t = t
		dir := t.TempDir()
		at := s.forwardCt() + 20
		s.expect("POST", "/start_profile", fmt.Sprintf(`{"output_dir":%q,"start_step":%d,"num_steps":2,"activities":["CPU"]}`, dir, at), 200, startOK)
		// As in SGLang, a deferred start is not "in progress" yet.
		s.expect("POST", "/stop_profile", "", 500, notRunning)
		poll(t, "2 traces", func() bool { return len(traces(t, dir)) == 2 })
		if ct := s.forwardCt(); ct < at+1 {
			t.Fatalf("traces written at step %d, before start_step %d + num_steps", ct, at)
		}
		for _, n := range traces(t, dir) {
			tr := readTrace(t, filepath.Join(dir, n))
			if tr.count("user_annotation", "demo::step") != 2 || tr.count("kernel", "") != 0 {
				t.Fatalf("%s: CPU-only window of 2 steps has %d steps, %d kernels", n,
					tr.count("user_annotation", "demo::step"), tr.count("kernel", ""))
			}
		}
	})
	t.Run("profile_by_stage writes EXTEND and DECODE", func(t *testing.T) {
		s.t = t
		dir := t.TempDir()
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","num_steps":1,"profile_by_stage":true}`, 200, startOK)
		poll(t, "4 traces", func() bool { return len(traces(t, dir)) == 4 })
		for _, n := range traces(t, dir) {
			if !regexp.MustCompile(`^\d+\.\d{6}-TP-[01]-(EXTEND|DECODE)\.trace\.json\.gz$`).MatchString(n) {
				t.Fatalf("by-stage file name %q", n)
			}
		}
		poll(t, "profile over", func() bool {
			code, _ := s.do("POST", "/stop_profile", "")
			return code == 500
		})
	})
	t.Run("unknown activities are ignored", func(t *testing.T) {
		s.t = t
		dir := t.TempDir()
		s.expect("POST", "/start_profile", `{"output_dir":"`+dir+`","activities":["TPU"]}`, 200, startOK)
		s.expect("POST", "/stop_profile", "", 200, stopOK)
		if got := traces(t, dir); len(got) != 0 {
			t.Fatalf("unknown activity wrote %v", got)
		}
	})
	t.Run("prefix never leaves output_dir", func(t *testing.T) {
		s.t = t
		s.expect("POST", "/start_profile", `{"output_dir":"`+t.TempDir()+`","profile_prefix":"../x"}`, 400, "")
		s.expect("POST", "/start_profile", `{"num_steps":"three"}`, 422, "")
	})
	t.Run("log lines look like SGLang's", func(t *testing.T) {
		s.t = t
		poll(t, "a decode log line", func() bool { return strings.Contains(s.out.String(), "] Decode batch, #running-req: ") })
		for _, re := range []string{
			`(?m)^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d TP0\] Prefill batch, #new-seq: \d+, #new-token: \d+, #cached-token: \d+, token usage: \d\.\d\d, #running-req: \d+, #queue-req: \d+,$`,
			`(?m)^\[[^]]+ TP0\] Decode batch, #running-req: \d+, #token: \d+, token usage: \d\.\d\d, cuda graph: False, gen throughput \(token/s\): \d+\.\d\d, #queue-req: \d+,$`,
			`(?m)^\[[^]]+ TP1\] Profiling starts\. Traces will be saved to: \S+ \(with profile id: \d+\.\d{6}\)$`,
			`(?m)^\[[^]]+ TP1\] Profiling done\. Traces are saved to: \S+$`,
		} {
			if !regexp.MustCompile(re).MatchString(s.out.String()) {
				t.Errorf("no line matching %s in:\n%s", re, s.out)
			}
		}
	})
}

func TestShutdownEndsWorkers(t *testing.T) {
	s := startServer(t, 2)
	pids := childWorkers(t)
	if len(pids) != 2 {
		t.Fatalf("worker pids %v", pids)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("worker %d still exists after Run returned", pid)
		}
	}
	if _, err := os.Stat(s.ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}

func TestDeadWorkerEndsServer(t *testing.T) {
	s := startServer(t, 2)
	s.failOK = true
	pids := childWorkers(t)
	if len(pids) != 2 {
		t.Fatalf("worker pids %v", pids)
	}
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("Run: %v, want an error saying the worker was killed", err)
		}
		t.Logf("Run: %v", err)
	case <-time.After(deadline):
		t.Fatal("Run went on after a worker died")
	}
	if left := childWorkers(t); len(left) != 0 {
		t.Fatalf("workers left: %v", left)
	}
}

func TestOptionsRejected(t *testing.T) {
	for _, o := range []Options{{Ranks: -1}, {Ranks: MaxRanks + 1}, {Port: 70000}} {
		if err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) = nil, want an error", o)
		}
	}
}
