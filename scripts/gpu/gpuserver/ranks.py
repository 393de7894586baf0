"""The rank processes and what rank 0 tells them.

Rank 0 (the server's main process) runs the HTTP API and the scheduler, and its own
engine. Ranks 1..N-1 are processes started with multiprocessing's spawn method (a fresh
interpreter each, as SGLang starts its schedulers: no CUDA state is forked; nsys traces
them as exec'd children). Each follower waits on a pipe for one command at a time; rank 0
sends a command to every follower first, runs it on its own engine, then collects every
follower's answer, so all ranks do the same step at the same time and the slowest one
sets the pace (as a TP group does: with NCCL, the all-reduce makes them wait anyway).

A command is (op, kwargs); an answer is ("ok", result) or ("error", traceback text).
A follower that dies, or answers an error, ends the server: a TP group cannot go on
without a rank.
"""
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from types import SimpleNamespace

from . import naming


class RankError(RuntimeError):
    """A rank failed, or its process is gone."""

    def __init__(self, rank, msg):
        super().__init__("rank %d: %s" % (rank, msg))
        self.rank = rank


def make_logger(rank, tp_size, keep=None):
    """A log function printing SGLang-style lines for this rank. keep, when given, is a
    list-like that also receives each line (rank 0's self-check reads it)."""
    lock = threading.Lock()

    def log(msg):
        line = naming.log_prefix(rank, tp_size) + msg
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        if keep is not None:
            keep.append(line)
    return log


def make_engine(args, rank, log):
    if args.engine == "fake":
        from .fakeengine import FakeEngine
        return FakeEngine(rank, args, log)
    from .engine import TorchEngine  # the only import of torch
    return TorchEngine(rank, args, log)


def cuda_profiler_calls(args, gpu_id):
    """Whether this rank calls cudaProfilerStart/Stop for CUDA_PROFILER: new SGLang only on
    the node's first GPU (gpu_id == base_gpu_id), old SGLang on every rank."""
    return args.cuda_profiler_ranks == "all" or gpu_id == args.base_gpu_id


class RankRuntime:
    """One rank: runs rank 0's commands on its engine. Profiling is handled here (file
    names, log lines, which activities go where) so the torch engine and the fake engine
    share it; the engine only records and writes."""

    def __init__(self, rank, args, engine, log):
        self.rank = rank
        self.args = args
        self.engine = engine
        self.log = log
        self.tracing = None  # (spec, stage) of the torch trace being recorded
        self.mem = False
        self.cuda_range = False
        self.cuda_ranges = 0

    def info(self):
        i = dict(self.engine.info())
        i.update({"tp_rank": self.rank, "pid": os.getpid(),
                  "cuda_profiler_calls": cuda_profiler_calls(self.args, i.get("gpu_id", self.args.base_gpu_id))})
        return i

    def handle(self, op, kw):
        fn = {"prefill": self.engine.prefill, "decode": self.engine.decode,
              "profile_start": self.profile_start, "profile_stop": self.profile_stop,
              "stats": self.stats}.get(op)
        if fn is None:
            raise ValueError("unknown op %r" % op)
        return fn(**kw)

    def stats(self):
        s = dict(self.engine.stats())
        s.update({"tp_rank": self.rank, "pid": os.getpid(), "cuda_profiler_ranges": self.cuda_ranges,
                  "tracing": self.tracing is not None})
        return s

    def profile_start(self, spec, stage):
        """Start what the activities ask for. A recorder that fails is logged and left
        out (its file will be missing, which the window's owner sees); it never ends the
        server."""
        self.log(naming.profiling_starts_line(spec["output_dir"], spec["profile_id"], stage))
        acts = spec["activities"]
        torch_acts = [a for a in acts if a in ("CPU", "GPU")]
        if torch_acts:
            if self.tracing is not None:
                old_spec, old_stage = self.tracing
                self.log("A profile was still recording%s; writing it before the new one starts."
                         % ((" (" + old_stage + ")") if old_stage else ""))
                self._write_trace(old_spec, old_stage)
            if self._try("start the torch profiler", self.engine.trace_start, torch_acts, spec["with_stack"],
                         spec["record_shapes"]):
                self.tracing = (spec, stage)
        if "MEM" in acts and not self.mem:
            self.mem = self._try("record the CUDA memory history", self.engine.mem_start)
        if "CUDA_PROFILER" in acts and not self.cuda_range:
            if cuda_profiler_calls(self.args, self.engine.info().get("gpu_id", self.args.base_gpu_id)):
                if self._try("call cudaProfilerStart", self.engine.cuda_profiler_start):
                    self.cuda_range = True
                    self.cuda_ranges += 1
                    self.log("cudaProfilerStart (CUDA_PROFILER)")
        return None

    def _try(self, what, fn, *a):
        try:
            fn(*a)
            return True
        except Exception as e:
            self.log("ERROR: rank %d could not %s: %s: %s" % (self.rank, what, type(e).__name__, e))
            return False

    def profile_stop(self, spec, stage):
        out = spec["output_dir"]
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            self.log("ERROR: rank %d cannot make %s: %s" % (self.rank, out, e))
        self.log(naming.stop_profiling_line(stage))
        files = []
        if self.tracing is not None:
            tspec, tstage = self.tracing
            path = self._write_trace(tspec, stage if stage is not None else tstage)
            if path:
                files.append(path)
        if self.mem:
            path = os.path.join(out, naming.memory_file_name(self.rank, stage))
            if self._try("write the memory snapshot %s" % path, self.engine.mem_dump, path):
                files.append(path)
            self.mem = False
        if self.cuda_range:
            if self._try("call cudaProfilerStop", self.engine.cuda_profiler_stop):
                self.log("cudaProfilerStop (CUDA_PROFILER)")
            self.cuda_range = False
        self.log(naming.profiling_done_line(out))
        return files

    def _write_trace(self, spec, stage):
        """The torch trace to its SGLang name; None when writing it failed (logged)."""
        path = os.path.join(spec["output_dir"], naming.trace_file_name(spec["profile_id"], self.rank,
                                                                        spec["prefix"], stage))
        self.tracing = None
        try:
            os.makedirs(spec["output_dir"], exist_ok=True)
        except OSError as e:
            self.log("ERROR: rank %d cannot make %s: %s" % (self.rank, spec["output_dir"], e))
        return path if self._try("write the trace %s" % path, self.engine.trace_stop, path) else None

    def close(self):
        self.engine.close()


def follower_main(rank, args_dict, conn):
    """A follower rank's process: build the engine, say ready, run commands until told to
    shut down or until rank 0 is gone (the pipe closes)."""
    # Ctrl-C and the agent's SIGTERM go to the whole process group; rank 0 decides when the
    # ranks stop (it sends shutdown), so a follower never dies first on a signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = SimpleNamespace(**args_dict)
    log = make_logger(rank, args.tp_size)
    try:
        rt = RankRuntime(rank, args, make_engine(args, rank, log), log)
        conn.send(("ready", rt.info()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            op, kw = conn.recv()
        except (EOFError, OSError):
            log("rank 0 is gone; exiting")
            break
        if op == "shutdown":
            try:
                rt.close()
            finally:
                conn.send(("ok", None))
            break
        try:
            conn.send(("ok", rt.handle(op, kw)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RankGroup:
    """Rank 0's view of all ranks: its own runtime plus the followers' pipes."""

    def __init__(self, args, log, ready_timeout=600.0):
        self.args = args
        self.log = log
        self.ready_timeout = ready_timeout
        self.procs = []
        self.conns = []
        self.local = None
        self.infos = []
        self.last_graph = False
        self._closing = False
        self._lock = threading.Lock()  # one command in flight

    def start(self):
        a = self.args
        # NVLink SHARP (NVLS) multicast is off on the lent machines (docs/gpu-validation.md).
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        if not getattr(a, "dist_port", None):
            a.dist_port = free_port()
        ctx = multiprocessing.get_context("spawn")
        for r in range(1, a.tp_size):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=follower_main, args=(r, vars(a), child), name="tp%d" % r, daemon=False)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        try:
            self.local = RankRuntime(0, a, make_engine(a, 0, self.log), self.log)
            infos = [self.local.info()]
            for i, c in enumerate(self.conns):
                infos.append(self._ready(i + 1, c))
        except BaseException:
            self.close(graceful=False)
            raise
        comms = {i.get("comm") for i in infos}
        if len(comms) > 1:
            self.close(graceful=False)
            raise RankError(0, "ranks disagree on communication (%s): every rank must see the same GPUs" % sorted(comms))
        self.infos = infos
        threading.Thread(target=self._watch, name="rank-watchdog", daemon=True).start()
        return infos

    def _ready(self, rank, conn):
        deadline = time.monotonic() + self.ready_timeout
        p = self.procs[rank - 1]
        while not conn.poll(0.5):
            if not p.is_alive():
                raise RankError(rank, "process %s exited with code %s before it was ready" % (p.pid, p.exitcode))
            if time.monotonic() > deadline:
                raise RankError(rank, "not ready after %.0f s" % self.ready_timeout)
        kind, payload = conn.recv()
        if kind != "ready":
            raise RankError(rank, "failed to start:\n%s" % payload)
        return payload

    def _watch(self):
        """A follower that dies mid-run would leave rank 0 waiting forever (in a pipe, or in
        an NCCL all-reduce): end the server loudly instead."""
        while not self._closing:
            for r, p in enumerate(self.procs, start=1):
                if not p.is_alive() and not self._closing:
                    self.log("FATAL: rank %d (pid %s) exited with code %s; a TP group cannot go on "
                             "without it: exiting" % (r, p.pid, p.exitcode))
                    os._exit(1)
            time.sleep(0.2)

    def _broadcast(self, op, **kw):
        with self._lock:
            for r, c in enumerate(self.conns, start=1):
                try:
                    c.send((op, kw))
                except (OSError, EOFError) as e:
                    raise RankError(r, "cannot send %s: %s" % (op, e))
            results = [self.local.handle(op, kw)]
            for r, c in enumerate(self.conns, start=1):
                try:
                    kind, payload = c.recv()
                except (OSError, EOFError) as e:
                    raise RankError(r, "no answer to %s (process gone?): %s" % (op, e))
                if kind != "ok":
                    raise RankError(r, "%s failed:\n%s" % (op, payload))
                results.append(payload)
            return results

    # What the scheduler calls.
    def prefill(self, items):
        return self._broadcast("prefill", items=items)[0]

    def decode(self, slots, ids, positions):
        out, graph = self._broadcast("decode", slots=slots, ids=ids, positions=positions)[0]
        self.last_graph = graph
        return out

    def profile_start(self, spec, stage):
        self._broadcast("profile_start", spec=spec, stage=stage)

    def profile_stop(self, spec, stage):
        files = []
        for f in self._broadcast("profile_stop", spec=spec, stage=stage):
            files.extend(f)
        return files

    def stats(self):
        return self._broadcast("stats")

    def close(self, graceful=True, timeout=30.0):
        self._closing = True
        for c in self.conns:
            if graceful:
                try:
                    c.send(("shutdown", {}))
                except (OSError, EOFError):
                    pass
        for r, (p, c) in enumerate(zip(self.procs, self.conns), start=1):
            if graceful:
                try:
                    if c.poll(timeout):
                        c.recv()
                except (OSError, EOFError):
                    pass
            p.join(timeout if graceful else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
            c.close()
        if self.local is not None:
            try:
                self.local.close()
            finally:
                self.local = None
