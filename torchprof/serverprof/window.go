package serverprof

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Window is one profile a server was asked to record.
type Window struct {
	ID     string
	Flavor Flavor
	// Dir is where the traces land. SGLang, TRT-LLM: BaseDir/ID, made by Start for this
	// window alone. vLLM: the server's torch_profiler_dir (Request.ServerDir), shared by
	// every window of the server (Shared); "" when the caller did not say it.
	Dir    string
	Shared bool
	// What the window asked for; Stop and Wait read them.
	NumSteps       int
	Activities     []Activity
	ProfileByStage bool
	MergeProfiles  bool
	Started        time.Time

	before map[string]struct{} // regular files in a shared Dir at Start
}

// ExpectsTraces says whether the window writes trace files at all. A window recording
// CUDA_PROFILER alone only opens and closes an nsys capture range
// (--capture-range=cudaProfilerApi): nsys writes that capture, not the server.
func (w *Window) ExpectsTraces() bool {
	if w.Activities == nil {
		return true
	}
	return slices.ContainsFunc(w.Activities, func(a Activity) bool { return a != CUDAProfiler })
}

// Start asks the server to start recording the window. Nothing is sent when the request
// cannot be served as asked (ErrInvalid, ErrUnsupported); then no dir is made either.
// For SGLang and TRT-LLM it makes BaseDir/ID first and removes it again if the server
// refuses.
//
// vLLM answers 200 to a start while a profile runs and ignores it: the client cannot
// tell, so run one window at a time on a vLLM server.
//
// Errors: ErrAlreadyRunning (a profile is in progress: stop it, or wait for its
// num_steps), ErrNotFound (no /start_profile: for vLLM, the server runs without
// --profiler-config), ErrServerDown, ErrTimeout, ErrRefused.
func (c *Client) Start(ctx context.Context, r Request) (*Window, error) {
	if _, err := ParseFlavor(string(c.flavor)); err != nil {
		return nil, err
	}
	if err := r.check(c.flavor); err != nil {
		return nil, err
	}
	w := &Window{ID: r.ID, Flavor: c.flavor, NumSteps: r.NumSteps, Activities: slices.Clone(r.Activities),
		ProfileByStage: r.ProfileByStage, MergeProfiles: r.MergeProfiles}
	made := false
	if c.flavor == VLLM {
		if r.ServerDir != "" {
			before, err := listShared(r.ServerDir)
			if err != nil {
				return nil, err
			}
			w.Dir, w.Shared, w.before = filepath.Clean(r.ServerDir), true, before
		}
	} else {
		dir, err := makeWindowDir(r.BaseDir, r.ID)
		if err != nil {
			return nil, err
		}
		w.Dir, made = dir, true
	}
	body, err := r.body(c.flavor, w.Dir)
	if err == nil {
		w.Started = time.Now()
		err = c.start(ctx, body, w)
	}
	if err != nil {
		if made {
			os.Remove(w.Dir) // only while empty: never lose a trace a server wrote anyway
		}
		return nil, err
	}
	return w, nil
}

// makeWindowDir makes base (if needed) and base/id, which must be new.
func makeWindowDir(base, id string) (string, error) {
	base = filepath.Clean(base)
	if err := os.MkdirAll(base, 0o750); err != nil {
		return "", wrapf(ErrInvalid, err, "window %s: base dir: %v; give a dir this user can write", id, err)
	}
	dir := filepath.Join(base, id)
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", wrapf(ErrInvalid, err, "window %s: %s already exists: every window needs its own output dir; pick a new window id", id, dir)
		}
		return "", wrapf(ErrInvalid, err, "window %s: make %s: %v", id, dir, err)
	}
	return dir, nil
}

func (c *Client) start(ctx context.Context, body []byte, w *Window) error {
	r, err := c.do(ctx, http.MethodPost, "/start_profile", body, c.startTimeout, replyLimit)
	if err != nil {
		return err
	}
	base := c.base.Redacted()
	if r.status == http.StatusOK {
		return nil
	}
	if err := authError(r, base, "/start_profile"); err != nil {
		return err
	}
	text := strings.ToLower(string(r.body))
	switch c.flavor {
	case VLLM:
		if r.status == http.StatusNotFound {
			return errorf(ErrNotFound, "POST %s/start_profile: 404: this vLLM runs without --profiler-config, which is what adds /start_profile and /stop_profile; restart it with --profiler-config '{\"profiler\": \"torch\", \"torch_profiler_dir\": \"/abs/dir\"}' (or \"profiler\": \"cuda\" for nsys capture ranges)", base)
		}
	case TRTLLM:
		switch {
		case r.status == http.StatusNotFound:
			return errorf(ErrNotFound, "POST %s/start_profile: 404: this trtllm-serve has no /start_profile (added in 2026, TensorRT-LLM PR #13872); upgrade it, or profile with TLLM_PROFILE_START_STOP at launch", base)
		case r.status == http.StatusConflict || strings.Contains(text, "already in progress") || strings.Contains(text, "pending"):
			return errorf(ErrAlreadyRunning, "POST %s/start_profile: HTTP %d: a profile is already in progress on trtllm-serve (%s): stop it with /stop_profile, or wait for its num_steps to end, then start again", base, r.status, snippet(r.body))
		case r.status == http.StatusNotImplemented:
			return errorf(ErrUnsupported, "POST %s/start_profile: HTTP 501: this trtllm-serve backend cannot profile over HTTP (only the PyTorch backend can): %s", base, snippet(r.body))
		}
	case SGLang:
		switch {
		case r.status == http.StatusNotFound:
			return errorf(ErrNotFound, "POST %s/start_profile: 404: not an SGLang server, or one too old to profile over HTTP; check the URL and flavor", base)
		case r.status == http.StatusInternalServerError && (strings.Contains(text, "already in progress") || isGeneric500(r.body)):
			// SGLang turns every refusal into an exception, which the web framework answers
			// with a bare 500; "already in progress" is the one refusal a start meets in
			// practice.
			return errorf(ErrAlreadyRunning, "POST %s/start_profile: HTTP 500 (%s): SGLang answers every refusal this way, and the usual one is a profile already in progress: stop it with /stop_profile, or wait for its num_steps to end, then start again; if none is running, the server's log names the cause", base, snippet(r.body))
		}
	}
	return errorf(ErrRefused, "POST %s/start_profile: HTTP %d: %s", base, r.status, snippet(r.body))
}

// isGeneric500 says whether a 500 body is the web framework's own, which carries no reason.
func isGeneric500(b []byte) bool {
	s := strings.TrimSpace(string(b))
	return s == "" || strings.EqualFold(s, "Internal Server Error")
}

func authError(r reply, base, route string) error {
	if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
		return errorf(ErrRefused, "POST %s%s: HTTP %d: the server wants credentials: pass its API key in Options.Header (Authorization: Bearer ...)", base, route, r.status)
	}
	return nil
}

// StopResult is how a stop went.
type StopResult struct {
	// AlreadyStopped: the server had already ended the window itself (it was bounded by
	// NumSteps) and said there was nothing to stop. Its traces are written or being
	// written: Wait for them.
	AlreadyStopped bool
	Route          string // the route that answered: "/stop_profile" or SGLang's older "/end_profile"
	Reply          string // the server's answer, bounded and sanitized
}

// Stop asks the server to stop recording. w may be nil when the caller does not know the
// window (then a stop that finds nothing running is ErrNotRunning).
//
// SGLang answers only once every rank wrote its trace (Options.StopTimeout); it has
// /stop_profile, and some older versions only /end_profile, which Stop tries on a 404.
// A window bounded by NumSteps that the server already ended comes back as
// StopResult.AlreadyStopped, not as an error. vLLM: call Stop even after its
// max_iterations ended the recording, or its next /start_profile is silently ignored;
// its 200 says nothing about the traces: Wait for them.
//
// Errors: ErrNotRunning, ErrNotFound, ErrServerDown, ErrTimeout (the server may still be
// writing: Wait for the files), ErrRefused.
func (c *Client) Stop(ctx context.Context, w *Window) (StopResult, error) {
	if _, err := ParseFlavor(string(c.flavor)); err != nil {
		return StopResult{}, err
	}
	bounded := w != nil && w.NumSteps > 0
	routes := []string{"/stop_profile"}
	if c.flavor == SGLang {
		if c.endProfile.Load() {
			routes = []string{"/end_profile"}
		} else {
			routes = append(routes, "/end_profile")
		}
	}
	base := c.base.Redacted()
	for i, route := range routes {
		r, err := c.do(ctx, http.MethodPost, route, nil, c.stopTimeout, replyLimit)
		if errors.Is(err, ErrTimeout) && w != nil && w.Dir != "" {
			return StopResult{}, wrapf(ErrTimeout, err, "%v; the server may still be writing traces to %s: Wait for them", err, w.Dir)
		}
		if err != nil {
			return StopResult{}, err
		}
		if r.status == http.StatusNotFound && i+1 < len(routes) {
			continue // SGLang's older name for the route
		}
		res := StopResult{Route: route, Reply: snippet(r.body)}
		if c.flavor == SGLang && route == "/end_profile" && r.status != http.StatusNotFound {
			c.endProfile.Store(true)
		}
		err = c.stopStatus(r, base, route, bounded)
		if errors.Is(err, errAlreadyStopped) {
			res.AlreadyStopped, err = true, nil
		}
		return res, err
	}
	return StopResult{}, nil // not reached: the last route always returns
}

// stopStatus judges a stop's answer; nil error with res.AlreadyStopped set is the "it
// ended by itself" case.
func (c *Client) stopStatus(r reply, base, route string, bounded bool) error {
	if r.status == http.StatusOK {
		return nil
	}
	if err := authError(r, base, route); err != nil {
		return err
	}
	text := strings.ToLower(string(r.body))
	switch c.flavor {
	case VLLM:
		if r.status == http.StatusNotFound {
			return errorf(ErrNotFound, "POST %s%s: 404: this vLLM runs without --profiler-config, so it has no profiling routes; restart it with --profiler-config '{\"profiler\": \"torch\", \"torch_profiler_dir\": \"/abs/dir\"}'", base, route)
		}
	case SGLang:
		if r.status == http.StatusNotFound {
			return errorf(ErrNotFound, "POST %s/stop_profile and /end_profile: 404: not an SGLang server, or one without profiling routes; check the URL and flavor", base)
		}
		if r.status == http.StatusInternalServerError && (strings.Contains(text, "not in progress") || isGeneric500(r.body)) {
			return notRunning(base, route, r, bounded)
		}
	case TRTLLM:
		if r.status == http.StatusNotFound {
			return errorf(ErrNotFound, "POST %s%s: 404: this trtllm-serve has no profiling routes (added in TensorRT-LLM PR #13872); upgrade it", base, route)
		}
		if r.status == http.StatusConflict || strings.Contains(text, "not in progress") || strings.Contains(text, "not running") || strings.Contains(text, "no active") {
			return notRunning(base, route, r, bounded)
		}
	}
	return errorf(ErrRefused, "POST %s%s: HTTP %d: %s", base, route, r.status, snippet(r.body))
}

// errAlreadyStopped marks, inside Stop, a refusal that means the server ended a bounded
// window itself.
var errAlreadyStopped = errors.New("already stopped")

func notRunning(base, route string, r reply, bounded bool) error {
	if bounded {
		return errAlreadyStopped
	}
	return errorf(ErrNotRunning, "POST %s%s: HTTP %d (%s): the server says no profile is in progress: it ended by itself, someone else stopped it, or the server restarted; look for traces in the window's dir (SGLang answers every refusal with a bare 500, so an error while writing traces looks the same: its log tells)", base, route, r.status, snippet(r.body))
}
