// Package torch is the torch-profiler capture backend: the logic that
// cmd/nsys-agent-backend-torch serves as a plugin. A window is a torch-profiler capture
// the server records itself, through its own /start_profile (SGLang, trtllm-serve, vLLM
// run with --profiler-config), with the CPU and GPU activities (MEM on request); nsys is
// not involved.
//
// A window's life, in its folder (Window.Dir):
//
//   - Start asks the server to write into Dir/<window id> (a folder of the window's own:
//     the client refuses one that exists) and returns once the server confirmed.
//   - Stop sends /stop_profile and waits until every rank's trace is written (sizes
//     settled for Settle, as many as the server's tp/dp/pp sizes say); Wait does the same
//     for a window bounded by steps, which the server ends by itself. Both then move the
//     files the server wrote up into Dir, where the agent lists its artifacts.
//   - Finalize merges the rank traces into one SGLang-compatible trace
//     (merged-{profile_id}.trace.json.gz, torchprof.Merge), analyzes them
//     (torchprof.AnalyzeKineto: per-rank GPU time, the slowest rank and why) into
//     summary.json, summary.html and the manifest's summary. A rank trace that does not
//     parse is left out of both with a warning naming it.
//
// The backend keeps what it knows of an open window in memory, but can rebuild it from
// the window folder alone, so a Stop or Finalize after a plugin restart still works (for
// SGLang and trtllm-serve, whose traces land in the window's own folder).
package torch
