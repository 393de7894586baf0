#!/usr/bin/env python3
"""nsys-agent's GPU test server: a small Llama-style decoder on torch (random weights, a
byte tokenizer, batched greedy decode with CUDA graphs) that speaks SGLang's HTTP API and
profiling semantics, with --tp-size rank processes. See docs/gpu-validation.md.

    python3 scripts/gpu/server.py --port 30000 --tp 2 --enable-metrics
    python3 scripts/gpu/server.py --self-check --tp 2        # ~30 s, PASS/FAIL per check
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpuserver.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
