#!/usr/bin/env python3
"""Checks a window's `nsys-agent analyze -o json` against what the server says it is
(`GET /get_server_info` saved to a file): every rank's kernels are in the capture, with
communication kernels when the ranks use NCCL, and the slow rank is the one analyze names.

    python3 scripts/gpu/checkreport.py --analyze a.json --server-info info.json \\
        --expect-ranks 2 [--expect-comm] [--expect-slow 1] [--name w3]
    python3 scripts/gpu/checkreport.py --server-info info.json --print-pids   # PID,PID

Ranks are matched by pid in an nsys capture (analyze labels them "pid N") and by TP rank
in torch-profiler traces (labels "TP00", "TP01", ...). When analyze gave its own verdict
("verdict" in the JSON), a broken one fails too. Prints one CHECK PASS/FAIL line per
fact; exit 1 if any failed, 2 on bad input.
"""
import argparse
import json
import re
import sys


def rank_map(server_info):
    """{tp_rank: pid} from the server's /get_server_info."""
    ranks = server_info["nsys_agent_gpuserver"]["ranks"]
    return {int(r["tp_rank"]): int(r["pid"]) for r in ranks}


def find_rank(summary, tp_rank, pid):
    """The analyze rank entry for a server rank, or None."""
    want_labels = {"pid %d" % pid, "TP%02d" % tp_rank}
    for r in summary.get("ranks") or []:
        if r.get("label") in want_labels or (r.get("pid") == pid and str(r.get("label", "")).startswith("pid")):
            return r
    return None


def label_rank(label, pids):
    """The TP rank an analyze label stands for, or None."""
    m = re.fullmatch(r"TP(\d+)(?:-.*)?", label or "")
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"pid (\d+)", label or "")
    if m:
        for tp, pid in pids.items():
            if pid == int(m.group(1)):
                return tp
    return None


def check(summary, pids, expect_ranks, expect_comm=False, expect_slow=None, name="window"):
    """[(ok, line)] for one capture."""
    out = []

    def add(ok, what):
        out.append((bool(ok), "CHECK %s %s: %s" % ("PASS" if ok else "FAIL", name, what)))

    v = summary.get("verdict")
    if isinstance(v, dict):  # analyze's own checks (torchprof/verdict), when this nsys-agent has them
        findings = ["%s %s: %s" % (f.get("level"), f.get("id"), f.get("message")) for f in v.get("findings") or []
                    if isinstance(f, dict)]
        add(v.get("level") in ("ok", "warning"), "analyze verdict %s%s" % (
            v.get("level"), (" (" + "; ".join(findings) + ")") if findings else ""))

    add(len(pids) == expect_ranks, "the server has %d rank(s), want %d (pids %s)" % (len(pids), expect_ranks, pids))
    for tp in sorted(pids):
        r = find_rank(summary, tp, pids[tp])
        if r is None:
            labels = [x.get("label") for x in summary.get("ranks") or []]
            add(False, "rank %d (pid %d) is not in the capture (ranks there: %s)" % (tp, pids[tp], labels))
            continue
        add(r.get("kernels", 0) > 0, "rank %d (%s): %d kernels, %.3f ms compute" % (
            tp, r.get("label"), r.get("kernels", 0), r.get("compute_ns", 0) / 1e6))
        if expect_comm:
            add(r.get("comm_ns", 0) > 0, "rank %d (%s): %.3f ms in communication kernels" % (
                tp, r.get("label"), r.get("comm_ns", 0) / 1e6))
    if expect_slow is not None:
        slow = summary.get("slowest_rank")
        got = label_rank(slow, pids) if slow else None
        add(got == expect_slow, "slowest rank %r = rank %s, want rank %d (imbalance %.2f; %s)" % (
            slow, got, expect_slow, summary.get("imbalance") or 0, summary.get("reason", "")))
    return out


def pids_arg(server_info):
    """The server's rank pids as analyze's --expect-pids value."""
    return ",".join(str(p) for _, p in sorted(rank_map(server_info).items()))


def main(argv=None):
    p = argparse.ArgumentParser(prog="checkreport.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--analyze", help="nsys-agent analyze -o json output")
    p.add_argument("--server-info", required=True, help="the server's GET /get_server_info, saved")
    p.add_argument("--expect-ranks", type=int)
    p.add_argument("--expect-comm", action="store_true", help="every rank has NCCL kernels")
    p.add_argument("--expect-slow", type=int, default=None, help="TP rank analyze must name slowest")
    p.add_argument("--name", default="window")
    p.add_argument("--print-pids", action="store_true", help="only print the ranks' pids as PID,PID (for analyze)")
    a = p.parse_args(argv)
    if a.print_pids:
        try:
            with open(a.server_info) as f:
                print(pids_arg(json.load(f)))
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            print("cannot read %s: %s" % (a.server_info, e), file=sys.stderr)
            return 2
    if a.analyze is None or a.expect_ranks is None:
        p.error("--analyze and --expect-ranks are needed (or --print-pids)")
    try:
        with open(a.analyze) as f:
            summary = json.load(f)
        with open(a.server_info) as f:
            pids = rank_map(json.load(f))
    except (OSError, ValueError, KeyError, TypeError) as e:
        print("CHECK FAIL %s: cannot read the inputs: %s: %s" % (a.name, type(e).__name__, e))
        return 2
    results = check(summary, pids, a.expect_ranks, a.expect_comm, a.expect_slow, a.name)
    for _, line in results:
        print(line)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
