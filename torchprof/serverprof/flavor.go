package serverprof

import (
	"context"
	"encoding/json"
	"net/http"
)

// Flavor is the kind of server: which profiling endpoints it has and what they take.
type Flavor string

const (
	SGLang Flavor = "sglang" // SGLang's http_server
	VLLM   Flavor = "vllm"   // vLLM ≥ 0.13 run with --profiler-config
	TRTLLM Flavor = "trtllm" // TensorRT-LLM's trtllm-serve
)

// ParseFlavor reads a flavor name: "sglang", "vllm" or "trtllm".
func ParseFlavor(s string) (Flavor, error) {
	switch f := Flavor(s); f {
	case SGLang, VLLM, TRTLLM:
		return f, nil
	}
	return "", errorf(ErrInvalid, "server flavor %q: want sglang, vllm or trtllm", s)
}

// Detect tells which server answers at baseURL, with GET requests that change nothing on
// the server. What tells them apart, as read in each server's code:
//
//   - GET /get_server_info answers a JSON object of server arguments (model_path, tp_size,
//     ..., version) on SGLang only (python/sglang/srt/entrypoints/http_server.py). Newer
//     SGLang keeps it as an alias of /server_info, and SGLang's PD router answers it with
//     {"prefill": [...], "decode": [...]}. trtllm-serve has /server_info but no
//     /get_server_info; vLLM has neither outside its dev mode.
//   - GET /v1/models fills owned_by with a constant default naming the server: "vllm"
//     (ModelCard in vllm/entrypoints/openai/protocol.py, later
//     vllm/entrypoints/openai/engine/protocol.py), "tensorrt_llm" (ModelCard in
//     tensorrt_llm/serve/openai_protocol.py), "sglang" (ModelCard in
//     python/sglang/srt/entrypoints/openai/protocol.py).
//
// Not used, on purpose: GET /version answers {"version": ...} on both vLLM and
// trtllm-serve (same shape, so it tells nothing); trtllm-serve's GET /metrics and GET
// /perf_metrics drain the server's iteration-stats and per-request queues (a side
// effect: whoever scrapes them next misses entries); POST /start_profile would start a
// profile.
//
// A server whose /v1/models wants an API key answers 401: pass the key in
// Options.Header, or name the flavor.
func Detect(ctx context.Context, baseURL string, opts Options) (Flavor, error) {
	c, err := newClient(baseURL, "", opts)
	if err != nil {
		return "", err
	}
	return c.detect(ctx)
}

func (c *Client) detect(ctx context.Context) (Flavor, error) {
	r, err := c.do(ctx, http.MethodGet, "/get_server_info", nil, c.probeTimeout, infoLimit)
	if err != nil {
		return "", err
	}
	if r.status == http.StatusOK && !r.truncated {
		var info map[string]json.RawMessage
		if json.Unmarshal(r.body, &info) == nil && info != nil {
			_, tp := info["tp_size"]
			_, model := info["model_path"]
			_, prefill := info["prefill"]
			_, decode := info["decode"]
			if tp || model || (prefill && decode) {
				return SGLang, nil
			}
		}
	}
	r, err = c.do(ctx, http.MethodGet, "/v1/models", nil, c.probeTimeout, infoLimit)
	if err != nil {
		return "", err
	}
	switch r.status {
	case http.StatusOK:
		var models struct {
			Data []struct {
				OwnedBy string `json:"owned_by"`
			} `json:"data"`
		}
		if json.Unmarshal(r.body, &models) == nil {
			for _, m := range models.Data {
				switch m.OwnedBy {
				case "vllm":
					return VLLM, nil
				case "tensorrt_llm":
					return TRTLLM, nil
				case "sglang":
					return SGLang, nil
				}
			}
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", errorf(ErrRefused, "cannot tell which server answers at %s: GET /v1/models wants credentials (HTTP %d): pass the server's API key in Options.Header (Authorization: Bearer ...), or name the flavor (sglang, vllm, trtllm)", c.base.Redacted(), r.status)
	}
	return "", errorf(ErrUnsupported, "cannot tell which server answers at %s: no SGLang /get_server_info, and /v1/models (HTTP %d) names no vLLM, TensorRT-LLM or SGLang model: name the flavor (sglang, vllm, trtllm), or check the URL", c.base.Redacted(), r.status)
}

// ServerInfo is what an SGLang server says about itself in GET /get_server_info. Sizes
// the server did not report are 0.
type ServerInfo struct {
	Version     string
	ModelPath   string
	TPSize      int
	DPSize      int
	PPSize      int
	EPSize      int
	DPAttention bool // --enable-dp-attention: the DP ranks live inside the TP group
}

// ServerInfo asks SGLang for its parallel sizes. Other flavors have no such route
// (ErrUnsupported).
func (c *Client) ServerInfo(ctx context.Context) (ServerInfo, error) {
	if c.flavor != SGLang {
		return ServerInfo{}, errorf(ErrUnsupported, "%s has no /get_server_info: only SGLang reports its parallel sizes; count the rank files yourself (WaitOptions.Expected)", c.flavor)
	}
	r, err := c.do(ctx, http.MethodGet, "/get_server_info", nil, c.probeTimeout, infoLimit)
	if err != nil {
		return ServerInfo{}, err
	}
	switch {
	case r.status == http.StatusNotFound:
		return ServerInfo{}, errorf(ErrNotFound, "GET %s/get_server_info: 404: not an SGLang server, or one without the route; detect the flavor again or count the rank files yourself", c.base.Redacted())
	case r.status != http.StatusOK:
		return ServerInfo{}, errorf(ErrRefused, "GET %s/get_server_info: HTTP %d: %s", c.base.Redacted(), r.status, snippet(r.body))
	case r.truncated:
		return ServerInfo{}, errorf(ErrRefused, "GET %s/get_server_info: answer larger than %d bytes; not read", c.base.Redacted(), infoLimit)
	}
	var raw struct {
		Version     string `json:"version"`
		ModelPath   string `json:"model_path"`
		TPSize      int    `json:"tp_size"`
		DPSize      int    `json:"dp_size"`
		PPSize      int    `json:"pp_size"`
		EPSize      int    `json:"ep_size"`
		DPAttention bool   `json:"enable_dp_attention"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		return ServerInfo{}, wrapf(ErrRefused, err, "GET %s/get_server_info: not the JSON object SGLang answers (%v): %s", c.base.Redacted(), err, snippet(r.body))
	}
	return ServerInfo(raw), nil
}

// RankFiles is how many per-rank traces one window writes (one per scheduler process),
// or 0 when the server did not say. With --enable-dp-attention the DP ranks are inside
// the TP group (tp_size × pp_size processes); without, each DP replica has its own TP
// group (tp_size × dp_size × pp_size). A window profiled by stage writes one file per
// stage that ran, so this is a floor for it, not a count.
func (i ServerInfo) RankFiles() int {
	if i.TPSize <= 0 {
		return 0
	}
	n := i.TPSize * max(i.PPSize, 1)
	if !i.DPAttention {
		n *= max(i.DPSize, 1)
	}
	return n
}
