package demotarget

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// handler serves SGLang's HTTP API. Status codes and bodies copy SGLang (FastAPI): plain
// text for the profiling endpoints, {"detail": ...} for 404/405/422.
type handler struct {
	s    *scheduler
	o    *Options
	port int
}

func newHandler(s *scheduler, o *Options, port int) http.Handler {
	h := &handler{s: s, o: o, port: port}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", h.methods(h.health, "GET", "HEAD"))
	mux.HandleFunc("/health_generate", h.methods(h.health, "GET", "HEAD"))
	mux.HandleFunc("/get_server_info", h.methods(h.serverInfo, "GET"))
	mux.HandleFunc("/get_model_info", h.methods(h.modelInfo, "GET"))
	mux.HandleFunc("/v1/models", h.methods(h.models, "GET"))
	mux.HandleFunc("/v1/completions", h.methods(h.completions, "POST"))
	// SGLang registers both methods on the profiling routes.
	mux.HandleFunc("/start_profile", h.methods(h.startProfile, "GET", "POST"))
	mux.HandleFunc("/stop_profile", h.methods(h.stopProfile, "GET", "POST"))
	// Everything else, /end_profile included (404 on many real versions), is FastAPI's 404.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	})
	return mux
}

func (h *handler) methods(f http.HandlerFunc, allowed ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, m := range allowed {
			if r.Method == m {
				f(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, res ctlResult) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(res.status)
	io.WriteString(w, res.body)
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }

func (h *handler) serverInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"model_path":                   ModelPath,
		"tokenizer_path":               ModelPath,
		"served_model_name":            ModelPath,
		"host":                         h.o.Host,
		"port":                         h.port,
		"tp_size":                      h.o.Ranks,
		"dp_size":                      1,
		"pp_size":                      1,
		"ep_size":                      1,
		"device":                       "cpu",
		"disable_cuda_graph":           true,
		"enable_layerwise_nvtx_marker": false,
		"max_total_num_tokens":         maxTotalTokens,
		"version":                      sglangVersion,
		// forward_ct is a demo extension: tests and curious users can aim a start_step.
		"internal_states": []map[string]any{{
			"last_gen_throughput": float64(h.s.lastTput.Load()) / 100,
			"forward_ct":          h.s.forwardCt.Load(),
		}},
	})
}

func (h *handler) modelInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"model_path": ModelPath, "tokenizer_path": ModelPath,
		"is_generation": true})
}

func (h *handler) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{{
		"id": ModelPath, "object": "model", "created": hostclock.Now().Unix(), "owned_by": "sglang", "root": ModelPath,
	}}})
}

// profileReqInput is SGLang's ProfileReqInput; pointers tell absent from zero.
type profileReqInput struct {
	OutputDir      *string  `json:"output_dir"`
	StartStep      *int64   `json:"start_step"`
	NumSteps       *int64   `json:"num_steps"`
	Activities     []string `json:"activities"`
	ProfileByStage bool     `json:"profile_by_stage"`
	WithStack      *bool    `json:"with_stack"`
	RecordShapes   *bool    `json:"record_shapes"`
	MergeProfiles  bool     `json:"merge_profiles"`
	ProfilePrefix  *string  `json:"profile_prefix"`
}

// knownActivities are the ones SGLang acts on; others are dropped without a word.
var knownActivities = map[string]bool{"CPU": true, "GPU": true, "MEM": true, "RPD": true, "CUDA_PROFILER": true}

func (h *handler) startProfile(w http.ResponseWriter, r *http.Request) {
	var in profileReqInput
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeText(w, ctlResult{400, err.Error()})
		return
	}
	if len(bytes.TrimSpace(body)) > 0 { // no body: all defaults, as SGLang
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&in); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{{
				"type": "json_invalid", "loc": []string{"body"}, "msg": err.Error()}}})
			return
		}
	}
	req := startReq{byStage: in.ProfileByStage, merge: in.MergeProfiles, withStack: true}
	if in.OutputDir != nil && *in.OutputDir != "" {
		req.outputDir = *in.OutputDir
	} else if d := os.Getenv("SGLANG_TORCH_PROFILER_DIR"); d != "" {
		req.outputDir = d
	} else {
		req.outputDir = os.TempDir()
	}
	if abs, err := filepath.Abs(req.outputDir); err == nil {
		req.outputDir = abs
	}
	if in.StartStep != nil {
		req.startStep = *in.StartStep
	}
	if in.NumSteps != nil {
		req.numSteps = *in.NumSteps
	}
	if req.startStep < 0 || req.numSteps < 0 {
		writeText(w, ctlResult{400, "start_step and num_steps must not be negative."})
		return
	}
	if in.Activities == nil {
		in.Activities = []string{"CPU", "GPU"}
	}
	for _, a := range in.Activities {
		if knownActivities[a] {
			req.activities = append(req.activities, a)
		}
	}
	if in.WithStack != nil {
		req.withStack = *in.WithStack
	}
	if in.RecordShapes != nil {
		req.recordShapes = *in.RecordShapes
	}
	if in.ProfilePrefix != nil {
		req.prefix = *in.ProfilePrefix
	}
	// SGLang would join a prefix like "../x" into the path; the demo never writes outside
	// output_dir.
	if strings.ContainsAny(req.prefix, `/\`+"\x00") || req.prefix == "." || req.prefix == ".." {
		writeText(w, ctlResult{400, "profile_prefix must be a plain file name prefix, without path separators."})
		return
	}
	writeText(w, h.s.submit(r.Context(), ctlReq{start: &req}))
}

func (h *handler) stopProfile(w http.ResponseWriter, r *http.Request) {
	writeText(w, h.s.submit(r.Context(), ctlReq{stop: true}))
}

// completionRequest holds the fields of an OpenAI completion request that the demo uses.
type completionRequest struct {
	Model     string          `json:"model"`
	Prompt    json.RawMessage `json:"prompt"`
	MaxTokens *int            `json:"max_tokens"`
	Stream    bool            `json:"stream"`
}

const maxCompletionTokens = 256

func openAIError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"object": "error", "message": msg, "type": "BadRequestError", "param": nil, "code": status})
}

// completions runs the request through the scheduler: one prefill step, then one decode
// step per token, so each request makes every rank work a bit more.
func (h *handler) completions(w http.ResponseWriter, r *http.Request) {
	var in completionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if in.Stream {
		openAIError(w, http.StatusBadRequest, "the nsys-agent demo target does not stream; send stream: false")
		return
	}
	prompt := promptText(in.Prompt)
	if prompt == "" {
		openAIError(w, http.StatusBadRequest, "prompt must be a non-empty string or list of strings")
		return
	}
	maxTokens := 16 // OpenAI's default
	if in.MaxTokens != nil {
		maxTokens = *in.MaxTokens
	}
	if maxTokens < 1 || maxTokens > maxCompletionTokens {
		openAIError(w, http.StatusBadRequest, fmt.Sprintf("max_tokens must be between 1 and %d", maxCompletionTokens))
		return
	}
	promptTokens := max(1, len(strings.Fields(prompt))*4/3)
	g := &genReq{prompt: promptTokens, maxTokens: maxTokens}
	res := h.s.submit(r.Context(), ctlReq{gen: g})
	if res.status != http.StatusOK {
		openAIError(w, res.status, strings.TrimSpace(res.body))
		return
	}
	id := make([]byte, 16)
	rand.Read(id)
	writeJSON(w, http.StatusOK, map[string]any{
		"id": fmt.Sprintf("%x", id), "object": "text_completion", "created": hostclock.Now().Unix(), "model": ModelPath,
		"choices": []map[string]any{{"index": 0, "text": res.body, "logprobs": nil,
			"finish_reason": "length", "matched_stop": nil}},
		"usage": map[string]any{"prompt_tokens": promptTokens, "completion_tokens": maxTokens,
			"total_tokens": promptTokens + maxTokens, "prompt_tokens_details": nil},
	})
}

func promptText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, " ")
	}
	return ""
}
