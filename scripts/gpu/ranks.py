"""A small real CUDA target for nsys-agent's GPU validation (scripts/gpu/validate.sh).

The parent forks two rank processes before CUDA is touched (like a TP=2 server on one
GPU); each replays a CUDA graph (matmul, relu, matmul) every step inside an NVTX range
`rank<r>/step<n>`, and rank 1 also runs an extra eager matmul, so it is the slower rank.
It runs until SIGTERM/SIGINT and prints a step count per rank every few seconds.
"""
import os
import signal
import sys
import time

RANKS = int(os.environ.get("RANKS", "2"))


def rank_main(rank: int) -> None:
    import torch

    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    dev = torch.device("cuda", 0)
    a = torch.randn(2048, 2048, device=dev, dtype=torch.bfloat16)
    b = torch.randn(2048, 2048, device=dev, dtype=torch.bfloat16)
    out = torch.empty_like(a)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # warm up before capture
            out.copy_(torch.relu(a @ b) @ b)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out.copy_(torch.relu(a @ b) @ b)
    print(f"rank {rank} ready (pid {os.getpid()})", flush=True)
    step = 0
    began = last = time.time()
    while not stop:
        torch.cuda.nvtx.range_push(f"rank{rank}/step{step}")
        g.replay()
        if rank == 1:
            out.copy_(out @ b)  # the slower rank
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
        step += 1
        time.sleep(0.002)
        if time.time() - last > 5:
            print(f"rank {rank} step {step}", flush=True)
            last = time.time()
    took = time.time() - began
    print(f"rank {rank} done after {step} steps in {took:.1f} s ({step / took:.1f} steps/s)", flush=True)


def main() -> None:
    children = []
    for r in range(RANKS):
        pid = os.fork()
        if pid == 0:
            rank_main(r)
            os._exit(0)
        children.append(pid)

    def forward(sig, _):
        for c in children:
            try:
                os.kill(c, sig)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for c in children:
        _, status = os.waitpid(c, 0)
        code = code or os.waitstatus_to_exitcode(status)
    sys.exit(code)


if __name__ == "__main__":
    main()
