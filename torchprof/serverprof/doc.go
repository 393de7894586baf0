// Package serverprof drives the profiling endpoints that LLM inference servers expose
// over HTTP, and tells when the traces a window asked for are written.
//
// Three servers, three flavors (Detect tells them apart without side effects):
//
//   - SGLang: POST /start_profile with a JSON body (output_dir, start_step, num_steps,
//     activities, profile_by_stage, ...), POST /stop_profile (/end_profile on some older
//     versions). Plain-text answers; every refusal is a bare HTTP 500. A window bounded by
//     num_steps ends by itself. Per-rank traces are named
//     "[{prefix}-]{profile_id}-TP-{tp}[-DP-{dp}][-PP-{pp}][-EP-{ep}][-EXTEND|-DECODE].trace.json.gz".
//   - vLLM ≥ 0.13 run with --profiler-config: POST /start_profile and /stop_profile
//     without a body; 404 without --profiler-config; a 200 says nothing about the traces.
//     Step bounds and the output dir come from the server's config, never the request.
//   - TensorRT-LLM's trtllm-serve: POST /start_profile with output_dir, num_steps,
//     start_step, activities (CPU, GPU, CUDA_PROFILER), POST /stop_profile; JSON answers,
//     409 when a profile is already running.
//
// A window's life: Client.Start makes the window's own output dir (BaseDir/ID) and asks
// the server to record; Client.Stop ends it (not needed when num_steps bounds it);
// Window.Wait returns the files once every rank's trace stopped growing. Nothing here
// shells out, logs, or puts a request header into an error; answers are read with a
// size limit.
//
// The cuda-profiler backend (CUDA_PROFILER windows under nsys
// --capture-range=cudaProfilerApi, agent/backends) and the torch plugin (plugins/torch)
// are built on this client (docs/backends.md).
package serverprof
