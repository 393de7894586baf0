package demotarget

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// scheduler is the parent's one loop over the ranks, like SGLang's scheduler event loop: it
// runs forward steps in lockstep on every rank (the slowest rank sets the pace, as in a real
// TP group) and handles profiling and generation requests between steps. It is the only
// goroutine that talks to the workers.
type scheduler struct {
	ranks []*rankProc
	log   *logger
	ctl   chan ctlReq

	forwardCt atomic.Int64 // SGLang's forward_ct: steps started so far
	lastTput  atomic.Uint64

	armed  *startReq // waiting for its start_step
	active *activeProfile

	queue   []*genReq // waiting for prefill
	running []*genReq // decoding
	nextID  int

	decodeSteps  int // since the last decode log line
	decodeTokens int
	lastDecodeAt time.Time
}

// Load shape: a synthetic request is always running so the target stays busy, and a new
// one arrives when it finishes, giving a prefill batch every couple of seconds.
const (
	syntheticPrompt   = 96
	syntheticCached   = 32
	syntheticTokens   = 40
	decodeLogInterval = 20 // decode steps per "Decode batch" line (SGLang's default is 40)
	maxTotalTokens    = 65536
)

type ctlReq struct {
	start *startReq
	stop  bool
	gen   *genReq
	done  chan ctlResult // buffered: the scheduler never blocks on a caller that left
}

type ctlResult struct {
	status int // HTTP status
	body   string
}

// startReq is /start_profile after the HTTP layer resolved defaults.
type startReq struct {
	outputDir    string
	startStep    int64 // 0: start now
	numSteps     int64 // 0: until /stop_profile
	activities   []string
	byStage      bool
	withStack    bool
	recordShapes bool
	merge        bool
	prefix       string
}

type activeProfile struct {
	req    startReq
	id     string
	steps  map[string]int64 // profiled steps per stage ("" without profile_by_stage)
	closed map[string]bool  // stages already written
	files  []string
	torch  bool // CPU or GPU: the ranks record and write traces
}

type genReq struct {
	id        int
	prompt    int // new prompt tokens
	cached    int
	maxTokens int
	generated int
	synthetic bool
	done      chan ctlResult
}

func newScheduler(ranks []*rankProc, log *logger) *scheduler {
	return &scheduler{ranks: ranks, log: log, ctl: make(chan ctlReq), lastDecodeAt: time.Now()}
}

// submit hands a request to the loop and waits for its answer, or for the server to end.
func (s *scheduler) submit(ctx context.Context, r ctlReq) ctlResult {
	r.done = make(chan ctlResult, 1)
	select {
	case s.ctl <- r:
	case <-ctx.Done():
		return ctlResult{503, "The server is shutting down.\n"}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
		return ctlResult{503, "The server is shutting down.\n"}
	}
}

func (s *scheduler) run(ctx context.Context) error {
	err := s.loop(ctx)
	if ctx.Err() != nil {
		return nil // shutting down: a worker that left first is no failure
	}
	return err
}

func (s *scheduler) loop(ctx context.Context) error {
	for {
		// Requests are handled between steps, never during one.
	drain:
		for {
			select {
			case r := <-s.ctl:
				if err := s.handle(ctx, r); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			default:
				break drain
			}
		}
		if err := s.step(ctx); err != nil {
			return err
		}
	}
}

func (s *scheduler) handle(ctx context.Context, r ctlReq) error {
	switch {
	case r.start != nil:
		res, err := s.startProfile(ctx, *r.start)
		r.done <- res
		return err
	case r.stop:
		if s.active == nil {
			r.done <- ctlResult{500, "Profiling is not in progress. Call /start_profile first."}
			return nil
		}
		res, err := s.stopProfile(ctx, "")
		r.done <- res
		return err
	case r.gen != nil:
		s.nextID++
		r.gen.id = s.nextID
		r.gen.done = r.done
		s.queue = append(s.queue, r.gen)
	}
	return nil
}

func (s *scheduler) startProfile(ctx context.Context, req startReq) (ctlResult, error) {
	if s.active != nil {
		return ctlResult{500, "Profiling is already in progress. Call /stop_profile first."}, nil
	}
	if err := os.MkdirAll(req.outputDir, 0o755); err != nil {
		return ctlResult{500, fmt.Sprintf("Cannot create output_dir: %v", err)}, nil
	}
	// As in SGLang, a start_step defers the start and does not count as "in progress": a
	// second start replaces it, and a stop before it fires answers "not in progress".
	next := s.forwardCt.Load() + 1
	if req.startStep > 0 && req.startStep > next {
		s.armed = &req
		return ctlResult{200, "Start profiling.\n"}, nil
	}
	s.armed = nil
	if err := s.activate(ctx, req); err != nil {
		return ctlResult{500, err.Error()}, err
	}
	return ctlResult{200, "Start profiling.\n"}, nil
}

// activate starts recording on every rank; the next step is the first one profiled.
func (s *scheduler) activate(ctx context.Context, req startReq) error {
	// The host's clock, as SGLang's time.time(): the profile id and the traces' base time
	// move with the agent's clock-shift test hook, as they would on a host with that clock.
	now := hostclock.Now()
	us := now.UnixMicro()
	a := &activeProfile{
		req:    req,
		id:     fmt.Sprintf("%d.%06d", us/1e6, us%1e6), // SGLang: str(time.time())
		steps:  map[string]int64{},
		closed: map[string]bool{},
		torch:  slices.Contains(req.activities, "CPU") || slices.Contains(req.activities, "GPU"),
	}
	for _, r := range s.ranks {
		s.log.rankf(r.rank, "Profiling starts. Traces will be saved to: %s (with profile id: %s)", req.outputDir, a.id)
	}
	if slices.Contains(req.activities, "CUDA_PROFILER") {
		// One line a test (or a person) can count: the request as the server took it.
		s.log.rankf(0, "CUDA_PROFILER: cudaProfilerStart is unavailable without CUDA (nsys-agent demo target); no capture range opened (output_dir %s, num_steps %d)", req.outputDir, req.numSteps)
	}
	if slices.Contains(req.activities, "MEM") {
		s.log.rankf(0, "MEM: CUDA memory history is unavailable without CUDA (nsys-agent demo target); no memory snapshot will be written")
	}
	if slices.Contains(req.activities, "RPD") {
		s.log.rankf(0, "RPD: rocpd tracing is unavailable without ROCm (nsys-agent demo target); nothing recorded")
	}
	if a.torch {
		p := profileArgs{
			ID: a.id, Dir: req.outputDir, Prefix: req.prefix,
			CPU: slices.Contains(req.activities, "CPU"), GPU: slices.Contains(req.activities, "GPU"),
			WithStack: req.withStack, RecordShapes: req.recordShapes, ByStage: req.byStage,
			BaseNanos: now.Truncate(time.Second).UnixNano(),
		}
		if err := s.broadcast(ctx, command{Op: opStart, Profile: &p}); err != nil {
			return err
		}
	}
	s.active = a
	return nil
}

// stopProfile makes the ranks write their traces (one stage or all) and, when the profile
// is over, merges them on request. It blocks the loop, as SGLang's export does.
func (s *scheduler) stopProfile(ctx context.Context, stage string) (ctlResult, error) {
	a := s.active
	if stage == "" {
		for _, r := range s.ranks {
			s.log.rankf(r.rank, "Stop profiling...")
		}
	}
	var errs []error
	if a.torch {
		for _, r := range s.ranks {
			rep, err := r.call(ctx, command{Op: opStop, Stage: stage})
			if err != nil && rep.Op == "" {
				return ctlResult{500, err.Error()}, err // the worker is gone
			}
			errs = append(errs, err)
			a.files = append(a.files, rep.Files...)
		}
	}
	if stage != "" {
		a.closed[stage] = true
		if !(a.closed["EXTEND"] && a.closed["DECODE"]) {
			return ctlResult{200, ""}, nil
		}
	}
	s.active = nil
	if err := errors.Join(errs...); err != nil {
		return ctlResult{500, err.Error()}, nil
	}
	for _, r := range s.ranks {
		s.log.rankf(r.rank, "Profiling done. Traces are saved to: %s", a.req.outputDir)
	}
	if slices.Contains(a.req.activities, "CUDA_PROFILER") {
		// SGLang calls cudaProfilerStop here (by stop or after num_steps): the range ends.
		s.log.rankf(0, "CUDA_PROFILER: cudaProfilerStop skipped after %d profiled steps (no CUDA); no capture range closed", a.profiledSteps())
	}
	if a.req.merge && a.torch && !a.req.byStage {
		out := a.req.outputDir + "/merged-" + a.id + ".trace.json.gz"
		if err := mergeTraces(out, a.files); err != nil {
			s.log.rankf(0, "Failed to merge profiles: %v", err)
		} else {
			s.log.rankf(0, "Merged trace saved to: %s", out)
		}
	}
	return ctlResult{200, "Stop profiling. This will take some time.\n"}, nil
}

// profiledSteps is how many steps the profile recorded, over all stages.
func (a *activeProfile) profiledSteps() int64 {
	var n int64
	for _, c := range a.steps {
		n += c
	}
	return n
}

func (s *scheduler) broadcast(ctx context.Context, c command) error {
	for _, r := range s.ranks {
		if _, err := r.call(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// step runs one forward batch on all ranks: a prefill when requests are waiting, else a
// decode of the running ones.
func (s *scheduler) step(ctx context.Context) error {
	n := s.forwardCt.Add(1)
	if s.armed != nil && n >= s.armed.startStep {
		req := *s.armed
		s.armed = nil
		if err := s.activate(ctx, req); err != nil {
			return err
		}
	}
	if len(s.queue) == 0 && len(s.running) == 0 {
		s.queue = append(s.queue, &genReq{prompt: syntheticPrompt, cached: syntheticCached,
			maxTokens: syntheticTokens, synthetic: true})
	}
	prefill := len(s.queue) > 0
	tokens := 0
	if prefill {
		for _, g := range s.queue {
			tokens += g.prompt
		}
	} else {
		tokens = len(s.running)
	}
	// Send to all ranks first, then collect, so the ranks work in parallel.
	c := command{Op: opStep, Step: &stepArgs{N: n, Prefill: prefill, Tokens: tokens}}
	for _, r := range s.ranks {
		if err := r.send(c); err != nil {
			return err
		}
	}
	for _, r := range s.ranks {
		if _, err := r.receive(ctx); err != nil {
			return err
		}
	}
	if prefill {
		s.afterPrefill()
	} else {
		s.afterDecode()
	}
	return s.countProfiledStep(ctx, prefill)
}

func (s *scheduler) countProfiledStep(ctx context.Context, prefill bool) error {
	a := s.active
	if a == nil {
		return nil
	}
	stage := stageOf(a.req.byStage, prefill)
	if a.closed[stage] {
		return nil
	}
	a.steps[stage]++
	if a.req.numSteps == 0 || a.steps[stage] < a.req.numSteps {
		return nil
	}
	// num_steps reached: the server stops by itself, no /stop_profile needed.
	_, err := s.stopProfile(ctx, stage)
	return err
}

func (s *scheduler) afterPrefill() {
	var newTok, cached int
	for _, g := range s.queue {
		newTok += g.prompt
		cached += g.cached
		g.generated = 1 // a prefill yields the first token
	}
	s.log.rankf(0, "Prefill batch, #new-seq: %d, #new-token: %d, #cached-token: %d, token usage: %.2f, #running-req: %d, #queue-req: %d,",
		len(s.queue), newTok, cached, float64(s.kvTokens())/maxTotalTokens, len(s.running), 0)
	s.running = append(s.running, s.queue...)
	s.queue = s.queue[:0]
	s.finishDone()
}

func (s *scheduler) afterDecode() {
	for _, g := range s.running {
		g.generated++
	}
	s.decodeSteps++
	s.decodeTokens += len(s.running)
	if s.decodeSteps >= decodeLogInterval {
		now := time.Now()
		tput := float64(s.decodeTokens) / now.Sub(s.lastDecodeAt).Seconds()
		s.lastTput.Store(uint64(tput * 100))
		kv := s.kvTokens()
		s.log.rankf(0, "Decode batch, #running-req: %d, #token: %d, token usage: %.2f, cuda graph: False, gen throughput (token/s): %.2f, #queue-req: %d,",
			len(s.running), kv, float64(kv)/maxTotalTokens, tput, len(s.queue))
		s.decodeSteps, s.decodeTokens, s.lastDecodeAt = 0, 0, now
	}
	s.finishDone()
}

func (s *scheduler) kvTokens() int {
	n := 0
	for _, g := range s.running {
		n += g.prompt + g.cached + g.generated
	}
	return n
}

// finishDone answers the requests that generated all their tokens.
func (s *scheduler) finishDone() {
	s.running = slices.DeleteFunc(s.running, func(g *genReq) bool {
		if g.generated < g.maxTokens {
			return false
		}
		if g.done != nil {
			g.done <- ctlResult{200, completionText(g.generated)}
		}
		return true
	})
}

// completionText makes up the generated text: one word per token.
func completionText(tokens int) string {
	words := []string{" the", " demo", " target", " is", " busy", " profiling", " ranks", " on", " CPU"}
	var b strings.Builder
	for i := range tokens {
		b.WriteString(words[i%len(words)])
	}
	return b.String()
}

// logger prints SGLang-style log lines: "[2026-01-01 09:19:37 TP0] message".
type logger struct {
	mu     sync.Mutex
	w      interface{ Write([]byte) (int, error) }
	tpTags bool // SGLang tags lines with the TP rank only when tp_size > 1
}

func (l *logger) rankf(rank int, format string, a ...any) {
	tag := ""
	if l.tpTags {
		tag = fmt.Sprintf(" TP%d", rank)
	}
	l.line(tag, format, a...)
}

func (l *logger) printf(format string, a ...any) { l.line("", format, a...) }

func (l *logger) line(tag, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "[%s%s] %s\n", hostclock.Now().Format("2006-01-02 15:04:05"), tag, msg)
}
