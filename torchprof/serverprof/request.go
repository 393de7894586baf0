package serverprof

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Activity is what a server records during a window.
type Activity string

const (
	CPU          Activity = "CPU"           // torch profiler: CPU ops
	GPU          Activity = "GPU"           // torch profiler: CUDA kernels and memcpys
	MEM          Activity = "MEM"           // SGLang: a CUDA memory snapshot (*.pickle) per rank
	RPD          Activity = "RPD"           // SGLang on ROCm: rocprofiler tracing
	CUDAProfiler Activity = "CUDA_PROFILER" // cudaProfilerStart/Stop: an nsys --capture-range=cudaProfilerApi range; no trace file
)

// The activities each flavor takes. SGLang silently ignores a name it does not know and
// still answers 200, so the client refuses those itself.
var activities = map[Flavor][]Activity{
	SGLang: {CPU, GPU, MEM, RPD, CUDAProfiler},
	TRTLLM: {CPU, GPU, CUDAProfiler},
}

// Request is one profiling window to start.
type Request struct {
	// ID names the window: one path element of letters, digits, '.', '_' and '-', not
	// starting with '.'. With BaseDir it makes the window's own output dir.
	ID string
	// BaseDir (SGLang, TRT-LLM) is an absolute dir on this host that the server can write
	// into. Start makes BaseDir/ID (mode 0750: the server must run as the same user, as
	// it does when the agent launches it), which must not exist yet, and asks the server
	// to write there: every window gets its own dir.
	//
	// vLLM takes no output dir per request: it writes to the torch_profiler_dir of its
	// --profiler-config. Leave BaseDir empty for vLLM and set ServerDir.
	BaseDir string
	// ServerDir (vLLM only) is the server's torch_profiler_dir. The client does not send
	// it; Window.Wait watches it for files that were not there at Start. Several windows
	// share it, so only one window may run at a time. Empty: the window's files are not
	// watched (Wait refuses).
	ServerDir string
	// StartStep (SGLang, TRT-LLM) is the server step count at which recording starts,
	// an absolute count since the server started, not "skip N"; SGLang starts at the next
	// step if that one is past. 0: start now. vLLM refuses it: its delay_iterations come
	// from --profiler-config.
	StartStep int
	// NumSteps (SGLang, TRT-LLM) bounds the window: the server stops by itself after that
	// many steps and writes its traces; Stop is then not needed. 0: record until Stop.
	// vLLM refuses it: its max_iterations come from --profiler-config.
	NumSteps int
	// Activities to record; nil: the server's default (CPU and GPU). SGLang takes CPU,
	// GPU, MEM, RPD, CUDA_PROFILER; TRT-LLM CPU, GPU, CUDA_PROFILER; vLLM none (its
	// profiler kind, torch or cuda, comes from --profiler-config).
	Activities []Activity

	// SGLang only.
	ProfileByStage bool     // prefill (EXTEND) and decode (DECODE) traces apart
	ProfileStages  []string // newer SGLang: the stages to record, e.g. "prefill", "decode"
	WithStack      *bool    // record Python stacks (SGLang's default: true)
	RecordShapes   *bool    // record op input shapes (SGLang's default: false)
	MergeProfiles  bool     // SGLang also writes merged-{profile_id}.trace.json.gz
	ProfilePrefix  string   // prefix of the trace file names
	ProfileID      string   // newer SGLang: the profile id in the file names (default: the start time)
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	prefixPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// SGLang splits its file names on '-': a profile id must not contain one.
	profileIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._]{0,127}$`)
	stagePattern     = regexp.MustCompile(`^[A-Za-z][A-Za-z_]{0,31}$`)
)

// check refuses, before anything is sent, a request the flavor cannot serve as asked.
func (r *Request) check(f Flavor) error {
	if !idPattern.MatchString(r.ID) {
		return errorf(ErrInvalid, "window id %q: want one path element of letters, digits, '.', '_' and '-' (up to 128, not starting with '.')", r.ID)
	}
	if r.StartStep < 0 || r.NumSteps < 0 {
		return errorf(ErrInvalid, "window %s: start_step %d, num_steps %d: steps cannot be negative", r.ID, r.StartStep, r.NumSteps)
	}
	if r.Activities != nil && len(r.Activities) == 0 {
		return errorf(ErrInvalid, "window %s: an empty activity list records nothing: leave Activities nil for the server's default (CPU, GPU)", r.ID)
	}
	if f == VLLM {
		return r.checkVLLM()
	}
	if r.BaseDir == "" || !filepath.IsAbs(r.BaseDir) {
		return errorf(ErrInvalid, "window %s: base dir %q: want an absolute dir the server can write into (the server resolves a relative one against its own working dir)", r.ID, r.BaseDir)
	}
	if r.ServerDir != "" {
		return errorf(ErrUnsupported, "window %s: ServerDir is for vLLM, which cannot take an output dir per request; %s writes where BaseDir/ID says", r.ID, f)
	}
	allowed := activities[f]
	for i, a := range r.Activities {
		if !slices.Contains(allowed, a) {
			return errorf(ErrUnsupported, "window %s: activity %q: %s records only %s; nothing was sent", r.ID, a, f, joinActivities(allowed))
		}
		if slices.Contains(r.Activities[:i], a) {
			return errorf(ErrInvalid, "window %s: activity %s given twice", r.ID, a)
		}
	}
	if f == TRTLLM {
		if names := r.sglangOnly(); len(names) > 0 {
			return errorf(ErrUnsupported, "window %s: trtllm-serve's /start_profile takes only output_dir, num_steps, start_step and activities, not %s", r.ID, strings.Join(names, ", "))
		}
		return nil
	}
	if r.ProfilePrefix != "" && !prefixPattern.MatchString(r.ProfilePrefix) {
		return errorf(ErrInvalid, "window %s: profile prefix %q: want letters, digits, '.', '_' and '-' (it becomes part of every file name)", r.ID, r.ProfilePrefix)
	}
	if r.ProfileID != "" && !profileIDPattern.MatchString(r.ProfileID) {
		return errorf(ErrInvalid, "window %s: profile id %q: want letters, digits, '.' and '_' (SGLang's file names are split on '-')", r.ID, r.ProfileID)
	}
	for _, s := range r.ProfileStages {
		if !stagePattern.MatchString(s) {
			return errorf(ErrInvalid, "window %s: profile stage %q: want a stage name such as prefill or decode", r.ID, s)
		}
	}
	return nil
}

func (r *Request) checkVLLM() error {
	switch {
	case r.NumSteps > 0 || r.StartStep > 0:
		return errorf(ErrUnsupported, "window %s: vLLM takes no steps in /start_profile: its step bounds come from the server's --profiler-config (delay_iterations, max_iterations); start a window without steps, or restart the server with those set", r.ID)
	case r.Activities != nil:
		return errorf(ErrUnsupported, "window %s: vLLM takes no activities in /start_profile: --profiler-config's \"profiler\" (torch or cuda) decides what it records", r.ID)
	case r.BaseDir != "":
		return errorf(ErrUnsupported, "window %s: vLLM cannot write to a dir per window: it writes to the torch_profiler_dir of its --profiler-config; leave BaseDir empty and set ServerDir to that dir", r.ID)
	case r.ServerDir != "" && !filepath.IsAbs(r.ServerDir):
		return errorf(ErrInvalid, "window %s: ServerDir %q: want the absolute torch_profiler_dir of the server's --profiler-config", r.ID, r.ServerDir)
	}
	if names := r.sglangOnly(); len(names) > 0 {
		return errorf(ErrUnsupported, "window %s: vLLM's /start_profile takes no body, so not %s", r.ID, strings.Join(names, ", "))
	}
	return nil
}

// sglangOnly names the SGLang-only fields the request sets.
func (r *Request) sglangOnly() []string {
	var names []string
	add := func(set bool, name string) {
		if set {
			names = append(names, name)
		}
	}
	add(r.ProfileByStage, "profile_by_stage")
	add(len(r.ProfileStages) > 0, "profile_stages")
	add(r.WithStack != nil, "with_stack")
	add(r.RecordShapes != nil, "record_shapes")
	add(r.MergeProfiles, "merge_profiles")
	add(r.ProfilePrefix != "", "profile_prefix")
	add(r.ProfileID != "", "profile_id")
	return names
}

// body is the /start_profile body for dir. Only the fields the request sets are sent, so
// older servers that lack a field never see it.
func (r *Request) body(f Flavor, dir string) ([]byte, error) {
	if f == VLLM {
		return nil, nil
	}
	m := map[string]any{"output_dir": dir}
	if r.StartStep > 0 {
		m["start_step"] = r.StartStep
	}
	if r.NumSteps > 0 {
		m["num_steps"] = r.NumSteps
	}
	if r.Activities != nil {
		m["activities"] = r.Activities
	}
	if f == SGLang {
		if r.ProfileByStage {
			m["profile_by_stage"] = true
		}
		if len(r.ProfileStages) > 0 {
			m["profile_stages"] = r.ProfileStages
		}
		if r.WithStack != nil {
			m["with_stack"] = *r.WithStack
		}
		if r.RecordShapes != nil {
			m["record_shapes"] = *r.RecordShapes
		}
		if r.MergeProfiles {
			m["merge_profiles"] = true
		}
		if r.ProfilePrefix != "" {
			m["profile_prefix"] = r.ProfilePrefix
		}
		if r.ProfileID != "" {
			m["profile_id"] = r.ProfileID
		}
	}
	return json.Marshal(m)
}

func joinActivities(as []Activity) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, " ")
}
