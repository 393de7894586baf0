package torch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// Name is the backend's name: `start --backend torch`.
const Name = "torch"

// VLLMDirEnv names the environment variable that tells the backend vLLM's
// torch_profiler_dir (from the server's --profiler-config): vLLM takes no output dir per
// request and does not say its own over HTTP, so without it vLLM windows are refused.
const VLLMDirEnv = "NSYS_AGENT_VLLM_PROFILER_DIR"

// Defaults of the Backend's timing fields.
const (
	DefaultPoll      = 500 * time.Millisecond
	DefaultSettle    = 3 * time.Second
	DefaultRankWait  = 3 * time.Minute
	DefaultLiveEvery = 5 * time.Second
)

// Backend captures windows with the server's own torch profiler. The zero value is not
// ready: use New, then Configure with the server's URL.
type Backend struct {
	Version string
	// HTTP tunes the profiling client (timeouts, an Authorization header for a server run
	// with an API key).
	HTTP serverprof.Options
	// VLLMDir is vLLM's torch_profiler_dir ("" refuses vLLM windows); New reads VLLMDirEnv.
	VLLMDir string

	// Poll is the interval between two looks at the window's trace folder.
	Poll time.Duration
	// Settle is how long the traces must keep their sizes before they count as written,
	// unless the server said so itself (SGLang answers a stop only once every rank wrote
	// its trace).
	Settle time.Duration
	// RankWait bounds the wait for ranks that wrote nothing: once some traces are there
	// and nothing changed for this long, the window ends with the ranks it has and a
	// warning naming the others; after a stop with no trace at all, it fails.
	RankWait time.Duration
	// LiveEvery is the interval between two checks that the server still answers, while
	// traces are awaited.
	LiveEvery time.Duration

	mu     sync.Mutex
	url    string
	client *serverprof.Client
	// cudaTraced: the agent's nsys traces the server's CUDA (Target.Trace), which leaves
	// the torch profiler no GPU data; windows are refused, saying so.
	cudaTraced bool
	wins       map[string]*window
}

// window is what the backend keeps of an open window.
type window struct {
	sw       *serverprof.Window
	expected int // rank traces the server writes (SGLang's sizes); 0: not known
	// mu serializes collection: a Wait the agent cancelled may still be moving files when
	// the Stop that follows starts.
	mu sync.Mutex
}

var (
	_ shared.Backend    = (*Backend)(nil)
	_ shared.Configurer = (*Backend)(nil)
	_ shared.Waiter     = (*Backend)(nil)
	_ shared.Finalizer  = (*Backend)(nil)
)

// New returns the backend, reading vLLM's trace dir from VLLMDirEnv.
func New(version string) *Backend {
	return &Backend{Version: version, VLLMDir: os.Getenv(VLLMDirEnv)}
}

func (b *Backend) Info(ctx context.Context) (shared.Info, error) {
	return shared.Info{Name: Name, Version: b.Version, APIVersion: shared.APIVersion,
		Capabilities: []shared.Capability{shared.CapSteps, shared.CapSummary},
		Description: "the server's own torch profiler (/start_profile with CPU and GPU on SGLang, trtllm-serve, vLLM): one Kineto trace per rank, " +
			"merged into one SGLang-compatible trace, with per-rank GPU time and the slowest rank; no nsys needed",
		Options: options}, nil
}

// Configure takes the server's URL and tells its flavor. A server that does not answer
// yet (still loading its model) is asked again at the first Start.
func (b *Backend) Configure(ctx context.Context, t shared.Target) error {
	url := strings.TrimSpace(t.ServerURL)
	if url == "" {
		return shared.Wrap(shared.ErrUnsupported, errors.New("the torch backend drives the server's own /start_profile and needs its URL: run the agent with --server-url http://HOST:PORT (the server's own HTTP address)"))
	}
	// The URL's form is checked now, whatever the flavor turns out to be.
	if _, err := serverprof.New(url, serverprof.SGLang, b.HTTP); err != nil {
		return shared.Wrap(shared.ErrUnsupported, fmt.Errorf("--server-url: %w", err))
	}
	b.mu.Lock()
	b.url, b.client = url, nil
	b.cudaTraced = slices.Contains(t.Trace, "cuda")
	b.mu.Unlock()
	_, err := b.serverClient(ctx)
	if errors.Is(err, serverprof.ErrServerDown) || errors.Is(err, serverprof.ErrTimeout) {
		return nil
	}
	return mapServerError(err)
}

// serverClient detects the server's flavor once and keeps the client. A server the GETs
// cannot tell apart is spoken to as SGLang, whose request shape the others share.
func (b *Backend) serverClient(ctx context.Context) (*serverprof.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	if b.url == "" {
		return nil, shared.Wrap(shared.ErrUnsupported, errors.New("the torch backend was not configured with the server's URL: run the agent with --server-url http://HOST:PORT"))
	}
	flavor, err := serverprof.Detect(ctx, b.url, b.HTTP)
	if errors.Is(err, serverprof.ErrUnsupported) {
		flavor, err = serverprof.SGLang, nil
	}
	if err != nil {
		return nil, err
	}
	c, err := serverprof.New(b.url, flavor, b.HTTP)
	if err != nil {
		return nil, err
	}
	b.client = c
	return c, nil
}

func (b *Backend) poll() time.Duration      { return orDefault(b.Poll, DefaultPoll) }
func (b *Backend) settle() time.Duration    { return orDefault(b.Settle, DefaultSettle) }
func (b *Backend) rankWait() time.Duration  { return orDefault(b.RankWait, DefaultRankWait) }
func (b *Backend) liveEvery() time.Duration { return orDefault(b.LiveEvery, DefaultLiveEvery) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// serverDir is the folder the server writes a window's traces into: a sub-folder of the
// window's own, named after the window (the client makes it and refuses one that exists).
func serverDir(w shared.Window) (string, error) {
	if !filepath.IsAbs(w.Dir) {
		return "", fmt.Errorf("window %s: folder %q is not absolute; the agent gives every backend an absolute window folder", w.ID, w.Dir)
	}
	if w.ID == "" || !filepath.IsLocal(w.ID) || strings.ContainsAny(w.ID, `/\`) {
		return "", fmt.Errorf("window id %q: not one path element; the server's folder is named after it", w.ID)
	}
	return filepath.Join(w.Dir, w.ID), nil
}

// expectedRanks is how many rank traces the server writes per window: SGLang says its
// tp/dp/pp sizes; the others do not (0).
func expectedRanks(ctx context.Context, c *serverprof.Client) int {
	if c.Flavor() != serverprof.SGLang {
		return 0
	}
	info, err := c.ServerInfo(ctx)
	if err != nil {
		return 0
	}
	return info.RankFiles()
}

// lookup returns the backend's record of an open window, or rebuilds it from the window
// folder (the plugin was restarted since Start). vLLM's windows cannot be rebuilt: which
// files in its shared dir are the window's was known only at Start.
func (b *Backend) lookup(ctx context.Context, w shared.Window) (*window, error) {
	b.mu.Lock()
	tw := b.wins[w.ID]
	b.mu.Unlock()
	if tw != nil {
		return tw, nil
	}
	c, err := b.serverClient(ctx)
	if err != nil {
		return nil, mapServerError(err)
	}
	if c.Flavor() == serverprof.VLLM {
		return nil, fmt.Errorf("window %s: the torch backend has no record of its start (was the plugin restarted?), and vLLM's traces in %s cannot be told apart from other windows' without it; look there", w.ID, b.VLLMDir)
	}
	dir, err := serverDir(w)
	if err != nil {
		return nil, err
	}
	opts, _ := parseOptions(w.Options)
	return &window{sw: &serverprof.Window{ID: w.ID, Flavor: c.Flavor(), Dir: dir, NumSteps: w.Steps, Activities: opts.activities()},
		expected: expectedRanks(ctx, c)}, nil
}

func (b *Backend) remember(id string, tw *window) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wins == nil {
		b.wins = map[string]*window{}
	}
	b.wins[id] = tw
}

func (b *Backend) forget(id string) {
	b.mu.Lock()
	delete(b.wins, id)
	b.mu.Unlock()
}
