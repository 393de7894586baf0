#!/usr/bin/env python3
"""Decode throughput of scripts/gpu/server.py bare and under nsys-agent, interleaved over
rounds, as a table (DESIGN.md: an armed target keeps >= 98 % of its bare throughput; a
window reports what it cost).

Each round runs, with the same load (CONCURRENCY clients, completions back to back):
  bare          the server alone
  armed-idle    the server under `nsys-agent run --arm ARM`, no window open
  capturing     the same, during a window (`nsys-agent start [--backend B]`)
  after-window  the same, for AFTER seconds once `nsys-agent stop` returned
Tokens per second are the server's own count (sglang:generation_tokens_total from
/metrics) over each phase, so requests cut by a phase's edges count exactly.

    python3 scripts/gpu/throughput.py --rounds 3 --secs 10 --after 60 -- --tp 2
    (arguments after -- go to server.py; --enable-metrics is added)

Needs .gpu/bin/nsys-agent and the nsys setup of scripts/gpu/nsys-env.sh (NSYS_AGENT_NSYS).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gpuserver.client import Load, generated_tokens, wait_healthy  # noqa: E402

CONDITIONS = ("bare", "armed-idle", "capturing", "after-window")


def parse(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    server_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, server_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default=os.path.join(HERE, "..", "..", ".gpu", "bin", "nsys-agent"))
    p.add_argument("--arm", default="start-later", help="nsys-agent run --arm (start-later, launch, cuda-profiler)")
    p.add_argument("--backend", default=None, help="nsys-agent start --backend (default: the agent's)")
    p.add_argument("--trace", default=None, help="nsys-agent run --trace (torch windows need one without cuda: nvtx)")
    p.add_argument("--nsys-arg", action="append", default=[], metavar="OPT",
                   help="nsys-agent run --nsys-arg OPT, repeatable (e.g. --nsys-arg=--cuda-graph-trace=graph)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--first-round", type=int, default=1,
                   help="number of the first round: a later call continues an earlier one's interleaving")
    p.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                   help="print one table of the samples of several --out files (rounds split over calls)")
    p.add_argument("--secs", type=float, default=10.0, help="seconds measured per phase")
    p.add_argument("--after", type=float, default=60.0, help="seconds measured after a window")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument("--slice", type=float, default=10.0,
                   help="the after-window span is also reported in slices of this many seconds (when does it recover?)")
    p.add_argument("--only", choices=("bare", "armed"), default=None, help="run only one side of each round")
    p.add_argument("--no-window", action="store_true",
                   help="control run: armed rounds open no window (capturing and after-window are then idle time too)")
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--port", type=int, default=30011)
    p.add_argument("--out", default=None, help="write the raw numbers and the table as JSON here")
    p.add_argument("--logs", default=None, help="keep the servers' and agents' logs in this dir")
    a = p.parse_args(argv)
    if a.rounds < 1 or a.first_round < 1 or a.secs <= 0 or a.after <= 0:
        p.error("--rounds must be 1 or more, --secs and --after positive")
    a.server_args = server_args
    return a


def server_cmd(a):
    args = list(a.server_args)
    if "--enable-metrics" not in args:
        args.append("--enable-metrics")
    return [sys.executable, os.path.join(HERE, "server.py"), "--port", str(a.port)] + args


def agent_cmd(a, data_dir, ready, session):
    cmd = [a.agent, "run", "--arm", a.arm, "--data-dir", data_dir, "--ready-file", ready,
           "--listen", "127.0.0.1:0", "--session", session]
    if a.trace:
        cmd += ["--trace", a.trace]
    for o in a.nsys_arg:
        cmd += ["--nsys-arg=" + o]
    if a.arm == "cuda-profiler" or a.backend not in (None, "nsys"):
        cmd += ["--server-url", "http://127.0.0.1:%d" % a.port]
    return cmd + ["--"] + server_cmd(a)


def table(samples):
    """samples: {condition: [tokens/s per round]} -> rows of (condition, median, min, max,
    median as % of bare's median, n)."""
    bare = statistics.median(samples["bare"]) if samples.get("bare") else None
    rows = []
    for c in CONDITIONS:
        v = samples.get(c) or []
        if not v:
            continue
        med = statistics.median(v)
        rows.append((c, med, min(v), max(v), (100.0 * med / bare) if bare else None, len(v)))
    return rows


def format_table(rows):
    out = ["%-14s %12s %23s %9s %7s" % ("condition", "median tok/s", "range (min-max)", "vs bare", "rounds")]
    for c, med, lo, hi, pct, n in rows:
        out.append("%-14s %12.1f %23s %9s %7d" % (c, med, "%.1f-%.1f" % (lo, hi),
                                                 "-" if pct is None else "%.1f%%" % pct, n))
    return "\n".join(out)


def measure(base, secs):
    t0, n0 = time.monotonic(), generated_tokens(base)
    time.sleep(secs)
    n1, t1 = generated_tokens(base), time.monotonic()
    return (n1 - n0) / (t1 - t0)


def stop_group(p, timeout=120):
    """SIGINT to the process group (as Ctrl-C), then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if p.poll() is not None:
            return p.returncode
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return p.poll()
        try:
            return p.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return p.poll()


def run_agent(a, *args, env=None, check=True):
    r = subprocess.run([a.agent] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    if check and r.returncode != 0:
        raise RuntimeError("nsys-agent %s: exit %d: %s" % (" ".join(args), r.returncode, r.stdout[-2000:]))
    return r.stdout


def bare_round(a, logdir, rnd):
    base = "http://127.0.0.1:%d" % a.port
    log = open(os.path.join(logdir, "bare-%d.log" % rnd), "w")
    p = subprocess.Popen(server_cmd(a), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(base, 600, proc=p)
        load = Load(base, a.concurrency, a.max_tokens).start()
        time.sleep(a.warmup)
        v = measure(base, a.secs)
        snap = load.stop(30)
        if snap["errors"]:
            print("round %d bare: %d load errors (last: %s)" % (rnd, snap["errors"], snap["last_error"]), flush=True)
        return v
    finally:
        stop_group(p)
        log.close()


def armed_round(a, logdir, rnd):
    base = "http://127.0.0.1:%d" % a.port
    work = tempfile.mkdtemp(prefix="tput-")
    ready = os.path.join(work, "ready")
    log = open(os.path.join(logdir, "armed-%d.log" % rnd), "w")
    p = subprocess.Popen(agent_cmd(a, os.path.join(work, "data"), ready, "tput%d" % rnd), stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    out = {}
    try:
        deadline = time.monotonic() + 600
        while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nsys-agent did not come up (exit %s); see %s" % (p.poll(), log.name))
            time.sleep(0.5)
        env = dict(os.environ, NSYS_AGENT_ADDR=open(ready).read().strip())
        wait_healthy(base, 600, proc=p)
        load = Load(base, a.concurrency, a.max_tokens).start()
        time.sleep(a.warmup)
        out["armed-idle"] = measure(base, a.secs)
        start = ["start", "--name", "tput%d" % rnd] + (["--backend", a.backend] if a.backend else [])
        if not a.no_window:
            run_agent(a, *start, env=env)
        out["capturing"] = measure(base, a.secs)
        t0 = time.monotonic()
        if not a.no_window:
            run_agent(a, "stop", env=env)
        print("round %d: stop took %.1f s" % (rnd, time.monotonic() - t0), flush=True)
        slices, t_after, n_after = [], time.monotonic(), generated_tokens(base)
        while time.monotonic() - t_after < a.after - 1e-3:
            slices.append(measure(base, min(a.slice, a.after - (time.monotonic() - t_after))))
        out["after-window"] = (generated_tokens(base) - n_after) / (time.monotonic() - t_after)
        out["after-slices"] = slices
        snap = load.stop(30)
        if snap["errors"]:
            print("round %d armed: %d load errors (last: %s)" % (rnd, snap["errors"], snap["last_error"]), flush=True)
        return out
    finally:
        stop_group(p)
        log.close()
        try:  # the server's own output says why a round failed
            shutil.copy(os.path.join(work, "data", "target.log"), os.path.join(logdir, "target-%d.log" % rnd))
        except OSError:
            pass
        shutil.rmtree(work, ignore_errors=True)  # the report embeds this machine's environment


def combine(paths):
    """One table of several calls' samples (each call a few rounds of the same setup)."""
    samples = {c: [] for c in CONDITIONS}
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        for c in CONDITIONS:
            samples[c].extend(d["samples"].get(c, []))
    print(format_table(table(samples)), flush=True)
    return 0 if samples["bare"] and samples["armed-idle"] else 1


def main(argv=None):
    a = parse(argv)
    if a.combine:
        return combine(a.combine)
    logdir = a.logs or tempfile.mkdtemp(prefix="tput-logs-")
    os.makedirs(logdir, exist_ok=True)
    samples = {c: [] for c in CONDITIONS}
    for rnd in range(a.first_round, a.first_round + a.rounds):
        # Interleaved, bare first in odd rounds and last in even ones, so a drift of the
        # machine over the run does not favour one side.
        order = (bare_round, armed_round) if rnd % 2 else (armed_round, bare_round)
        if a.only:
            order = [fn for fn in order if fn.__name__.startswith(a.only)]
        for fn in order:
            try:
                v = fn(a, logdir, rnd)
            except Exception as e:
                print("round %d %s FAILED: %s" % (rnd, fn.__name__, e), flush=True)
                continue
            if isinstance(v, dict):
                for k, x in v.items():
                    samples.setdefault(k, []).append(x)
            else:
                samples["bare"].append(v)
            print("round %d %s: %s" % (rnd, fn.__name__, json.dumps(v if isinstance(v, dict) else {"bare": v})),
                  flush=True)
    rows = table(samples)
    print(format_table(rows), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"samples": samples, "table": rows, "server_args": a.server_args, "arm": a.arm,
                       "backend": a.backend, "secs": a.secs, "after": a.after, "concurrency": a.concurrency,
                       "max_tokens": a.max_tokens}, f, indent=1)
    if samples.get("after-slices"):
        for i, sl in enumerate(samples["after-slices"]):
            print("after-window slices of round %d (tok/s per %g s): %s" % (i + 1, a.slice, " ".join("%.1f" % x for x in sl)))
    want = {"bare": ["bare"], "armed": ["armed-idle"]}.get(a.only, ["bare", "armed-idle"])
    return 0 if all(samples[k] for k in want) else 1


if __name__ == "__main__":
    sys.exit(main())
