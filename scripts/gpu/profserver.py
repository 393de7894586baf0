#!/usr/bin/env python3
"""A small GPU server that speaks enough of SGLang's profiling API for the cuda-profiler
backend: GET /get_server_info, POST /start_profile {activities: [CUDA_PROFILER],
num_steps, output_dir}, POST /stop_profile. It runs matmul "engine steps" on the GPU;
cudaProfilerStart/Stop are called from the step loop (the thread that owns the CUDA
context), at step boundaries, as SGLang does. Written for scripts/gpu/cuda-profiler.sh."""
import argparse, json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

state = {"want_start": None, "want_stop": False, "active": False, "left": 0, "steps": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/get_server_info":
            return self._reply(200, json.dumps({"version": "profserver-0.1", "tp_size": 1, "dp_size": 1,
                                                "model_path": "random"}), "application/json")
        if self.path == "/health":
            return self._reply(200, "ok")
        self._reply(404, "not found")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}") if n else {}
        with lock:
            if self.path == "/start_profile":
                if state["active"] or state["want_start"]:
                    return self._reply(500, "Profiling is already in progress. Call /stop_profile first.")
                if "CUDA_PROFILER" not in (body.get("activities") or []):
                    return self._reply(500, "profserver only does CUDA_PROFILER")
                state["want_start"] = int(body.get("num_steps") or 0)
                print(f"start_profile {json.dumps(body)}", flush=True)
                return self._reply(200, "Start profiling.\n")
            if self.path == "/stop_profile":
                if not state["active"] and not state["want_start"]:
                    return self._reply(500, "Profiling is not in progress. Call /start_profile first.")
                state["want_stop"] = True
                return self._reply(200, "Stop profiling. This will take some time.\n")
        self._reply(404, "not found")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=30000)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    x = torch.randn(4096, 4096, device="cuda")
    w = torch.randn(4096, 4096, device="cuda")
    print(f"profserver on 127.0.0.1:{a.port}", flush=True)
    while True:  # one engine step per iteration
        with lock:
            if state["want_start"] is not None:
                torch.cuda.synchronize()
                torch.cuda.cudart().cudaProfilerStart()
                state["active"], state["left"], state["want_start"] = True, state["want_start"], None
                print(f"cudaProfilerStart at step {state['steps']}", flush=True)
        for _ in range(4):
            y = torch.relu(x @ w)
        torch.cuda.synchronize()
        state["steps"] += 1
        with lock:
            if state["active"]:
                bounded = state["left"] > 0
                if bounded:
                    state["left"] -= 1
                if state["want_stop"] or (bounded and state["left"] == 0):
                    torch.cuda.cudart().cudaProfilerStop()
                    print(f"cudaProfilerStop at step {state['steps']}", flush=True)
                    state["active"], state["want_stop"] = False, False
        time.sleep(0.01)


if __name__ == "__main__":
    main()
