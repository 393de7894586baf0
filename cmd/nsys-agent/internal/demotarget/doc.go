// Package demotarget is the built-in demo target of nsys-agent: an HTTP server that speaks
// SGLang's API (health, server info, completions, /start_profile, /stop_profile) and drives
// a few rank worker processes that do steady CPU work in lockstep, as tensor-parallel ranks
// do. Profiling windows make every rank write a Kineto (torch profiler) Chrome trace under
// SGLang's file names, with simulated GPU kernels, so that the agent's whole pipeline can be
// seen working on a machine without a GPU.
//
// The behaviour copies what was measured on real SGLang servers (see DESIGN.md, "SGLang and
// vLLM profiling endpoints"), quirks included: errors are HTTP 500 with a plain body,
// unknown activities are ignored, /end_profile is 404, num_steps stops by itself.
package demotarget
