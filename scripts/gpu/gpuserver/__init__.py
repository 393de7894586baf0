"""nsys-agent's GPU test server: a small decoder model on torch that speaks SGLang's HTTP
API (completions, server info, /start_profile and /stop_profile with SGLang's semantics),
its log lines and its per-rank trace names, for the GPU validation in scripts/gpu/.

Only gpuserver.engine and gpuserver.model import torch. Everything else (arguments, the
scheduler, the profiler state machine, the HTTP API, the rank protocol, the self-check)
is plain Python, so it is tested on machines without torch (scripts/gpu/tests) with the
CPU stand-in engine of gpuserver.fakeengine.
"""
