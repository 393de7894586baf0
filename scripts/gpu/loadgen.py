#!/usr/bin/env python3
"""Load generator for SGLang-compatible servers: CONCURRENCY clients sending
/v1/completions back to back (ignore_eos, so every request makes exactly --max-tokens
tokens), a line per --interval, a JSON summary at the end. Runs for --duration seconds,
or until SIGINT/SIGTERM (validate scripts start it in the background while windows are
taken and stop it after).

    python3 scripts/gpu/loadgen.py --url http://127.0.0.1:30000 -c 4 --duration 20 --out load.json

Standard library only (no torch). When the server has --enable-metrics, the summary also
has the server's own count of generated tokens over the run (sglang:generation_tokens_total),
which counts tokens of requests still running at the end too.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpuserver.client import Load, generated_tokens, percentile, wait_healthy  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(prog="loadgen.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:30000", help="the server's base URL")
    p.add_argument("-c", "--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--max-tokens", type=int, default=64, help="completion tokens per request")
    p.add_argument("--prompt", default="Profile me, please. " * 2)
    p.add_argument("--duration", type=float, default=0, help="seconds; 0 = until SIGINT/SIGTERM")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between progress lines (0: none)")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for /health first")
    p.add_argument("--out", default=None, help="write the JSON summary here too")
    a = p.parse_args(argv)
    if a.concurrency < 1 or a.max_tokens < 1 or a.duration < 0 or a.interval < 0:
        p.error("--concurrency and --max-tokens must be positive; --duration and --interval not negative")
    return a


def summarize(snap, seconds, latencies, server_tokens=None):
    """The run's numbers: client-side completed tokens per second, request latencies, and
    (when known) the server's generated tokens per second."""
    s = {"seconds": round(seconds, 3), "requests": snap["requests"], "completion_tokens": snap["tokens"],
         "errors": snap["errors"], "tokens_per_s": round(snap["tokens"] / seconds, 2) if seconds > 0 else 0.0,
         "latency_p50_s": _r(percentile(latencies, 0.5)), "latency_p99_s": _r(percentile(latencies, 0.99))}
    if snap.get("last_error"):
        s["last_error"] = snap["last_error"]
    if server_tokens is not None:
        s["server_generated_tokens"] = server_tokens
        s["server_tokens_per_s"] = round(server_tokens / seconds, 2) if seconds > 0 else 0.0
    return s


def _r(v):
    return None if v is None else round(v, 4)


def main(argv=None):
    a = parse(argv)
    base = a.url.rstrip("/")
    try:
        wait_healthy(base, a.wait)
    except RuntimeError as e:
        print("loadgen: %s" % e, file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        tok0 = generated_tokens(base)
    except (RuntimeError, OSError, ValueError):
        tok0 = None
    load = Load(base, a.concurrency, a.max_tokens, a.prompt).start()
    t0 = last_t = time.monotonic()
    last = load.snapshot()
    while not stop.is_set():
        now = time.monotonic()
        if a.duration and now - t0 >= a.duration:
            break
        step = a.interval if a.interval else 0.5
        if a.duration:
            step = min(step, a.duration - (now - t0))
        stop.wait(max(step, 0.01))
        if a.interval and time.monotonic() - last_t >= a.interval - 1e-6:
            snap, now = load.snapshot(), time.monotonic()
            print("loadgen t=%.1fs tokens/s=%.1f requests=%d errors=%d" % (
                now - t0, (snap["tokens"] - last["tokens"]) / (now - last_t), snap["requests"], snap["errors"]),
                flush=True)
            last, last_t = snap, now
    seconds = time.monotonic() - t0
    tok1 = None
    if tok0 is not None:
        try:
            tok1 = generated_tokens(base)
        except (RuntimeError, OSError, ValueError):
            pass
    snap = load.stop(join_timeout=30)
    with load.lock:
        lat = list(load.latencies)
    s = summarize(snap, seconds, lat, None if tok1 is None else tok1 - tok0)
    text = json.dumps(s, sort_keys=True)
    print("loadgen summary " + text, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0 if snap["requests"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
