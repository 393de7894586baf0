package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"github.com/nsys-agent/nsys-agent/torchprof/verdict"
)

// verdicts checks every window that captured once it settles (ready or failed): is the
// capture complete and readable (torchprof/verdict over its folder), and later, did it
// slow the server after it ended (the cost watcher's finding). The verdict lands in the
// manifest, the API, the window's SSE event and the findings counter.
type verdicts struct {
	mgr     *windows.Manager
	store   *windows.Store
	metrics *Metrics
	log     *slog.Logger
	ranks   func() []int // the target's processes
	nsys    string       // the nsys binary that exports reports for the checks ("": reports go unchecked)
	tools   verdict.Tools
	budget  int64  // report bytes per captured second (verdict.DefaultSizeBudgetPerSecond)
	scratch string // where reports are exported for a check, then removed

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	one    sync.Mutex // one check at a time: an export takes a core for seconds

	mu   sync.Mutex
	cuda map[string][]int // a window's target processes with CUDA loaded, seen as it began
	// kept are the verdicts made lately, and findings waiting for a verdict, so that the
	// cost's finding (up to an hour after) joins them; entries older than keepFor go.
	kept map[string]*keptVerdict
}

// keepFor is how long a verdict stays open to later findings: longer than the longest
// --cost-after (1 h).
const keepFor = 2 * time.Hour

type keptVerdict struct {
	res     *verdict.Verdict // nil while the checks run
	pending []verdict.Finding
	at      time.Time
}

// keptLocked returns id's entry, made if needed, and drops the stale ones.
func (v *verdicts) keptLocked(id string) *keptVerdict {
	now := time.Now()
	for k, e := range v.kept {
		if now.Sub(e.at) > keepFor {
			delete(v.kept, k)
		}
	}
	e := v.kept[id]
	if e == nil {
		e = &keptVerdict{at: now}
		v.kept[id] = e
	}
	return e
}

func newVerdicts(mgr *windows.Manager, store *windows.Store, metrics *Metrics, ranks func() []int, nsysPath, importer string, log *slog.Logger) *verdicts {
	ctx, cancel := context.WithCancel(context.Background())
	return &verdicts{mgr: mgr, store: store, metrics: metrics, log: log, ranks: ranks, nsys: nsysPath,
		tools: verdict.Tools{Importer: importer}, budget: verdict.DefaultSizeBudgetPerSecond,
		scratch: filepath.Join(store.Root, ".verdict"), ctx: ctx, cancel: cancel,
		cuda: map[string][]int{}, kept: map[string]*keptVerdict{}}
}

// observe is the Manager's OnChange hook. It runs under the Manager's save order, so it
// only notes what to do and leaves the work to goroutines.
func (v *verdicts) observe(old windows.State, m windows.Manifest) {
	if v == nil || old == m.State {
		return
	}
	switch {
	case m.State == windows.StateCapturing:
		v.start(func() { v.noteCUDA(m.ID) })
	case (m.State == windows.StateReady || m.State == windows.StateFailed) && m.StartedAt != nil && len(m.Verdict) == 0:
		v.start(func() { v.check(m) })
	}
}

func (v *verdicts) start(fn func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ctx.Err() != nil {
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		fn()
	}()
}

// noteCUDA records which of the target's processes hold the CUDA driver as the window
// begins: those are the ranks whose kernels the report must hold.
func (v *verdicts) noteCUDA(id string) {
	var pids []int
	for _, pid := range v.ranks() {
		if ok, _ := procs.Default.Maps(pid, "libcuda.so"); ok {
			pids = append(pids, pid)
		}
	}
	v.mu.Lock()
	v.cuda[id] = pids
	v.mu.Unlock()
}

// expect is what a window should hold.
func (v *verdicts) expect(m windows.Manifest) verdict.Expect {
	e := verdict.Expect{SizeBudgetPerSecond: v.budget, NVTX: m.Backend == "layerwise-nvtx"}
	if m.StartedAt != nil {
		end := m.FinishedAt
		if m.StoppedAt != nil {
			end = m.StoppedAt
		}
		if end != nil {
			e.CapturedSeconds = end.Sub(*m.StartedAt).Seconds()
		}
	}
	v.mu.Lock()
	pids, seen := v.cuda[m.ID]
	delete(v.cuda, m.ID)
	v.mu.Unlock()
	if seen {
		e.PIDs = pids
		e.NoGPU = len(pids) == 0
	}
	return e
}

func (v *verdicts) check(m windows.Manifest) {
	e := v.expect(m)
	v.one.Lock()
	defer v.one.Unlock()
	if v.ctx.Err() != nil {
		return
	}
	dir, err := v.store.WindowDir(m.ID)
	if err != nil {
		return
	}
	tools := v.tools
	if v.nsys != "" {
		if err := os.MkdirAll(v.scratch, 0o700); err == nil {
			scratch, err := os.MkdirTemp(v.scratch, m.ID+"-")
			if err == nil {
				defer os.RemoveAll(scratch)
				// The export runs with its own TMPDIR, away from the session's state there
				// (nsys keeps it under TMPDIR). Suspected, not proven: on the H200 (nsys
				// 2025.3.1, launch mode) windows 2 and 3 of an agent, each started while the
				// previous window's verdict export ran, held no CUDA call, while three
				// windows taken by hand one after the other held every rank's kernels.
				r := nsys.NewExecRunner(v.nsys)
				r.Env = exportEnv(scratch)
				tools.Export = func(ctx context.Context, report string) (string, error) {
					out := filepath.Join(scratch, filepath.Base(report)+".sqlite")
					return nsys.ExportSQLiteTo(ctx, r, report, out, 10*time.Minute)
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(v.ctx, 15*time.Minute)
	defer cancel()
	res, err := verdict.CheckDir(ctx, dir, tools, e)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			v.log.Warn("checking a window", "window", m.ID, "err", err)
		}
		return
	}
	v.mu.Lock()
	k := v.keptLocked(m.ID)
	res.Add(k.pending...)
	k.pending, k.res = nil, &res
	v.mu.Unlock()
	v.metrics.ObserveVerdict(res)
	v.save(m.ID, res)
}

// addFinding adds a finding that comes after the checks (the window's cost) to its
// verdict, or keeps it for the verdict still being made.
func (v *verdicts) addFinding(id string, f verdict.Finding) {
	if v == nil {
		return
	}
	v.metrics.ObserveFinding(f)
	v.mu.Lock()
	k := v.keptLocked(id)
	if k.res == nil {
		k.pending = append(k.pending, f)
		v.mu.Unlock()
		return
	}
	k.res.Add(f)
	c := *k.res
	c.Findings = slices.Clone(k.res.Findings)
	v.mu.Unlock()
	v.save(id, c)
}

func (v *verdicts) save(id string, res verdict.Verdict) {
	raw, err := json.Marshal(res)
	if err == nil {
		err = v.mgr.SetVerdict(id, raw)
	}
	if err != nil {
		v.log.Warn("recording a window's verdict", "window", id, "err", err)
		return
	}
	if res.Level != verdict.OK {
		v.log.Warn("window verdict", "window", id, "verdict", res.Level.String(), "findings", len(res.Findings))
	}
}

// close stops the checks still running (the agent is going) and waits for them.
func (v *verdicts) close() {
	if v == nil {
		return
	}
	v.mu.Lock()
	v.cancel()
	v.mu.Unlock()
	v.wg.Wait()
	_ = os.RemoveAll(v.scratch)
}

// addCostFinding turns a cost's slowdown into the window's finding.
func (v *verdicts) addCostFinding(id string, raw json.RawMessage) {
	var c cost.Result
	if json.Unmarshal(raw, &c) != nil || c.Slowdown == "" {
		return
	}
	v.addFinding(id, verdict.Finding{ID: verdict.IDSlowdownAfter, Level: verdict.Warning, Message: c.Slowdown,
		Fix: "watch the server's throughput (nsys-agent show; its metrics); if it does not recover, restart it, and take shorter windows or fewer activities"})
}

// exportEnv is what a check's export runs with: the agent's environment without its
// secrets, as every nsys command, and a TMPDIR of its own.
func exportEnv(scratch string) []string { return withEnv(ChildEnv(), "TMPDIR", scratch) }

// withEnv is env with name set to value (replaced where it was set).
func withEnv(env []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	return append(out, name+"="+value)
}
