"""--self-check: every route and profiling mode against the running server, through HTTP,
with load running; one PASS/FAIL line each. Meant to fail loudly and early on the GPU
machine (about 30 s) before a long validation run depends on the server."""
import gzip
import json
import os
import re
import threading
import time

from . import naming
from .client import Load, parse_metrics, request

WAIT = 60.0  # for a bounded profile's files: it needs num_steps batches, and the trace export


class Checks:
    def __init__(self, out):
        self.out = out
        self.results = []
        self.t0 = time.monotonic()

    def check(self, name, ok, detail=""):
        self.results.append((name, bool(ok), detail))
        self.out("SELF-CHECK %s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""))
        return ok

    def skip(self, name, why):
        self.out("SELF-CHECK SKIP %s: %s" % (name, why))

    def guard(self, name, fn):
        """Run one group of checks; an exception fails it with what happened."""
        try:
            fn()
        except Exception as e:  # a check must never stop the others
            self.check(name, False, "%s: %s" % (type(e).__name__, e))

    def summary(self):
        failed = [n for n, ok, _ in self.results if not ok]
        self.out("SELF-CHECK: %d passed, %d failed in %.1f s%s" % (
            len(self.results) - len(failed), len(failed), time.monotonic() - self.t0,
            (" (" + ", ".join(failed) + ")") if failed else ""))
        return not failed


def _wait(pred, timeout=WAIT, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()


def trace_kernels(path):
    """(events, kernels) in a gzipped Chrome trace, object or array format (torch without
    Kineto writes the array); kernels are events with cat "kernel"."""
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    ev = data if isinstance(data, list) else (data.get("traceEvents") or [])
    return len(ev), sum(1 for e in ev if isinstance(e, dict) and e.get("cat") == "kernel")


def read_trace(path, timeout=30.0):
    """trace_kernels once the file is whole: torch writes the gzip in place after the
    profile ends, so a file seen early may still be growing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return trace_kernels(path)
        except (EOFError, OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run(base, args, log_lines, out_dir, out=print):
    c = Checks(out)
    tp = args.tp_size
    real = args.engine == "torch" and args.device == "cuda"  # kernels, graphs, cudaProfiler, MEM
    cpu_torch = args.engine == "torch" and args.device == "cpu"

    def info():
        return request(base + "/get_server_info").json()

    def files_in(d):
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def expect_traces(name, d, stage=None, prefix=""):
        """Every rank's trace under SGLang's name, readable, with kernels on a GPU."""
        def ready():
            names = files_in(d)
            per_rank = []
            for r in range(tp):
                pat = re.compile(r"^%s[0-9.]+-TP-%d%s\.trace\.json\.gz$" % (
                    re.escape(prefix + "-") if prefix else "", r, re.escape("-" + stage) if stage else ""))
                hit = [n for n in names if pat.match(n)]
                if not hit:
                    return None
                per_rank.append(hit[0])
            return per_rank
        found = _wait(ready)
        if not c.check(name + " files", found, "%s in %s" % (found or files_in(d), d)):
            return
        counts = [read_trace(os.path.join(d, f)) for f in found]
        if real:
            c.check(name + " kernels", all(k > 0 for _, k in counts),
                    "per rank (events, kernels): %s" % counts)
        else:
            c.check(name + " readable", True, "%s, no kernels: %s" % ("--device cpu" if cpu_torch else "fake engine",
                                                                     counts))

    def start(body):
        return request(base + "/start_profile", "POST", body, timeout=120)

    def stop():
        return request(base + "/stop_profile", "POST", timeout=600)

    def not_in_progress():
        return _wait(lambda: not info()["nsys_agent_gpuserver"]["profile_in_progress"])

    # ---- the server itself ----
    def basics():
        c.check("health", request(base + "/health").status == 200)
        i = info()
        ranks = i["nsys_agent_gpuserver"]["ranks"]
        c.check("server_info", i.get("tp_size") == tp and i.get("model_path") and len(ranks) == tp,
                "tp_size %s, %d rank(s): %s" % (i.get("tp_size"), len(ranks),
                                                 [(r["tp_rank"], r["pid"], r["device"], r["comm"]) for r in ranks]))
        if real:
            want_graph = not args.disable_cuda_graph
            c.check("cuda graphs", all(r["cuda_graph"] == want_graph for r in ranks),
                    "per rank: %s" % [r["graph_batch_sizes"] for r in ranks])
            if want_graph:
                gc = [r["graph_check"] for r in ranks]
                c.check("graph = eager", all(g and g["equal"] >= 0.9 * g["tokens"] for g in gc),
                        "tokens equal per rank: %s" % gc)
        m = request(base + "/v1/models").json()
        c.check("v1/models", m["data"][0]["owned_by"] == "sglang")
        c.check("end_profile is 404", request(base + "/end_profile", "POST").status == 404)
    c.guard("basics", basics)

    def generation():
        r = request(base + "/v1/completions", "POST", {"prompt": "The quick brown fox", "max_tokens": 8,
                                                      "ignore_eos": True}, timeout=120)
        j = r.json()
        c.check("completion", r.status == 200 and j["usage"]["completion_tokens"] == 8
                and len(j["choices"][0]["text"]) == 8, r.text[:200])
        r = request(base + "/v1/completions", "POST", {"prompt": ["a", "bb"], "max_tokens": 4, "ignore_eos": True},
                    timeout=120)
        c.check("completion batch", r.status == 200 and len(r.json()["choices"]) == 2, r.text[:200])
        r = request(base + "/generate", "POST", {"input_ids": [1, 50, 60, 70],
                                                "sampling_params": {"max_new_tokens": 5, "ignore_eos": True}},
                    timeout=120)
        c.check("generate ids", r.status == 200 and len(r.json()["output_ids"]) == 5, r.text[:200])
        r = request(base + "/v1/completions", "POST", {"prompt": "x", "max_tokens": args.context_length})
        c.check("too long is 400", r.status == 400, r.text[:200])
    c.guard("generation", generation)

    load = Load(base, concurrency=4, max_tokens=48).start()
    try:
        ct0 = info()["internal_states"][0]["forward_ct"]
        c.check("steps run under load", _wait(lambda: info()["internal_states"][0]["forward_ct"] > ct0 + 50),
                "forward_ct %d -> %d" % (ct0, info()["internal_states"][0]["forward_ct"]))

        def manual():
            d = os.path.join(out_dir, "manual")
            r = start({"output_dir": d, "activities": ["CPU", "GPU"]})
            c.check("start", r.status == 200 and r.text == "Start profiling.\n", repr(r.text))
            r = start({"output_dir": d})
            c.check("second start is busy", r.status == 500 and "already in progress" in r.text, repr(r.text))
            time.sleep(0.3)
            r = stop()
            c.check("stop", r.status == 200 and r.text == "Stop profiling. This will take some time.\n", repr(r.text))
            expect_traces("manual window", d)
            r = stop()
            c.check("stop again is not running", r.status == 500 and "not in progress" in r.text, repr(r.text))
        c.guard("manual window", manual)

        def steps():
            d = os.path.join(out_dir, "steps")
            r = start({"output_dir": d, "num_steps": 10})
            c.check("start num_steps", r.status == 200, repr(r.text))
            c.check("num_steps ends by itself", not_in_progress())
            expect_traces("num_steps window", d)
            r = stop()
            c.check("stop after num_steps is not running", r.status == 500 and "not in progress" in r.text, repr(r.text))
        c.guard("num_steps window", steps)

        def start_step():
            d = os.path.join(out_dir, "start_step")
            ct = info()["internal_states"][0]["forward_ct"]
            r = start({"output_dir": d, "start_step": ct + 200, "num_steps": 3})
            c.check("start_step arms", r.status == 200, repr(r.text))
            r = stop()
            c.check("armed is not in progress", r.status == 500 and "not in progress" in r.text, repr(r.text))
            expect_traces("start_step window", d)
        c.guard("start_step window", start_step)

        def prefix():
            d = os.path.join(out_dir, "prefix")
            r = start({"output_dir": d, "num_steps": 3, "profile_prefix": "pfx"})
            c.check("start with prefix", r.status == 200, repr(r.text))
            expect_traces("prefixed traces", d, prefix="pfx")
            r = start({"output_dir": d, "num_steps": 3, "profile_prefix": "../up"})
            c.check("path prefix refused", r.status == 500, repr(r.text))
        c.guard("prefix", prefix)

        def cuda_profiler():
            d = os.path.join(out_dir, "cuda_profiler")
            before = [s["cuda_profiler_ranges"] for s in request(base + "/gpuserver/stats").json()["ranks"]]
            r = start({"output_dir": d, "activities": ["CUDA_PROFILER"], "num_steps": 5})
            c.check("start CUDA_PROFILER", r.status == 200, repr(r.text))
            c.check("CUDA_PROFILER ends by itself", not_in_progress())
            after = [s["cuda_profiler_ranges"] for s in request(base + "/gpuserver/stats").json()["ranks"]]
            calls = [rk["cuda_profiler_calls"] for rk in info()["nsys_agent_gpuserver"]["ranks"]]
            want = [b + (1 if call else 0) for b, call in zip(before, calls)]
            c.check("CUDA_PROFILER ranges", after == want and any(calls),
                    "ranges per rank %s -> %s (ranks that call cudaProfilerStart: %s)" % (before, after, calls))
            c.check("CUDA_PROFILER writes no trace", not [f for f in files_in(d) if f.endswith(".gz")], str(files_in(d)))
        if cpu_torch:
            c.skip("CUDA_PROFILER", "--device cpu has no cudaProfilerStart")
        else:
            c.guard("CUDA_PROFILER", cuda_profiler)

        def mem():
            d = os.path.join(out_dir, "mem")
            r = start({"output_dir": d, "activities": ["MEM"], "num_steps": 3})
            c.check("start MEM", r.status == 200, repr(r.text))
            got = _wait(lambda: len([f for f in files_in(d) if f.endswith(".pickle")]) >= tp)
            c.check("MEM snapshots", got, str(files_in(d)))
        if cpu_torch:
            c.skip("MEM", "--device cpu has no CUDA memory history")
        else:
            c.guard("MEM", mem)

        def unknown():
            r = start({"output_dir": os.path.join(out_dir, "unknown"), "activities": ["FOO"]})
            c.check("unknown activity ignored", r.status == 200, repr(r.text))
            r = stop()
            c.check("nothing started", r.status == 500 and "not in progress" in r.text, repr(r.text))
        c.guard("unknown activity", unknown)

        def metrics():
            r = request(base + "/metrics")
            m = parse_metrics(r.text) if r.status == 200 else {}
            c.check("metrics", "sglang:gen_throughput" in m and m.get("sglang:generation_tokens_total", 0) > 0,
                    "HTTP %d, gen_throughput %s" % (r.status, m.get("sglang:gen_throughput")))
        c.guard("metrics", metrics)
    finally:
        snap = load.stop()
    c.check("load", snap["requests"] > 0 and snap["errors"] == 0, str(snap))

    def by_stage():
        # From an idle server, as SGLang's by-stage profiling expects: the next request's
        # prefill opens EXTEND, its first decode closes it and opens DECODE. (Started while
        # requests decode, DECODE would open first and a later prefill would reopen EXTEND.)
        c.check("idle", _wait(lambda: _idle(info)),
                "forward_ct %s" % info()["internal_states"][0]["forward_ct"])
        d = os.path.join(out_dir, "stage")
        r = start({"output_dir": d, "num_steps": 2, "profile_by_stage": True})
        c.check("start by stage", r.status == 200, repr(r.text))
        r = request(base + "/v1/completions", "POST", {"prompt": "stage", "max_tokens": 8, "ignore_eos": True},
                    timeout=120)
        c.check("one request", r.status == 200, r.text[:200])
        expect_traces("EXTEND traces", d, stage=naming.STAGE_EXTEND)
        expect_traces("DECODE traces", d, stage=naming.STAGE_DECODE)
    if args.background_requests == 0:
        c.guard("by stage", by_stage)

    def ranks():
        st = request(base + "/gpuserver/stats", timeout=60).json()["ranks"]
        c.check("every rank stepped", all(s["decode_batches"] > 0 and s["prefill_batches"] > 0 for s in st),
                str([(s["tp_rank"], s["prefill_batches"], s["decode_batches"]) for s in st]))
        if args.slow_rank >= 0 and args.slow_rank_work > 0:
            c.check("slow rank works more", st[args.slow_rank]["slow_work"] > 0 and
                    all(s["slow_work"] == 0 for s in st if s["tp_rank"] != args.slow_rank),
                    str([s["slow_work"] for s in st]))
        if args.enable_layerwise_nvtx_marker and args.engine == "torch":
            c.check("layerwise NVTX ranges", all(s["nvtx_ranges"] > 0 for s in st), str([s["nvtx_ranges"] for s in st]))
    c.guard("ranks", ranks)

    text = "\n".join(log_lines)
    for what in ("Prefill batch, #new-seq:", "Decode batch, #running-req:", "Profiling done. Traces are saved to:"):
        c.check("log: " + what, what in text)
    return c.summary()


def _idle(info, quiet=0.3):
    """Whether forward_ct stays put for quiet seconds (no batch runs)."""
    a = info()["internal_states"][0]["forward_ct"]
    time.sleep(quiet)
    return info()["internal_states"][0]["forward_ct"] == a


class Runner(threading.Thread):
    """Runs the checks once the server answers, then asks it to stop."""

    def __init__(self, base, args, log_lines, out_dir, stop_server, out=print):
        super().__init__(name="self-check", daemon=True)
        self.base, self.args, self.log_lines, self.out_dir = base, args, log_lines, out_dir
        self.stop_server, self.out = stop_server, out
        self.passed = False

    def run(self):
        try:
            self.passed = run(self.base, self.args, self.log_lines, self.out_dir, self.out)
        except Exception as e:
            self.out("SELF-CHECK FAIL (aborted): %s: %s" % (type(e).__name__, e))
        finally:
            self.stop_server()
