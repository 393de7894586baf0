"""The CPU stand-in engine (--engine fake), for the tests on machines without torch or a
GPU. It is not a model: it returns deterministic token ids after a short sleep, and its
"traces" say so ("fakeEngine": true, CPU events only, never a kernel). Everything around
it (ranks, scheduler, profiler state machine, HTTP API, file names, log lines) is the
real server's code."""
import gzip
import json
import os
import pickle
import time

STEP_SECONDS = 0.0005  # a decode step; enough to make throughput and step counts real numbers


class FakeEngine:
    def __init__(self, rank, args, log):
        self.rank = rank
        self.args = args
        self.vocab = args.vocab_size
        self.events = None
        self.counts = {"prefill_batches": 0, "decode_batches": 0, "slow_work": 0,
                       "cuda_profiler_starts": 0, "cuda_profiler_stops": 0, "nvtx_ranges": 0}
        log("fake engine (CPU stand-in, no GPU work) on rank %d, pid %d" % (rank, os.getpid()))

    def info(self):
        return {"engine": "fake", "device": "cpu", "gpu_id": self.args.base_gpu_id, "comm": "none",
                "cuda_graph": False, "graph_batch_sizes": [], "graph_check": None,
                "layerwise_nvtx": bool(self.args.enable_layerwise_nvtx_marker), "model": "none"}

    def _event(self, name, t0):
        if self.events is not None:
            self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": os.getpid(), "tid": os.getpid(),
                                "ts": t0 * 1e6, "dur": (time.time() - t0) * 1e6})

    def _slow(self):
        if self.rank == self.args.slow_rank:
            time.sleep(STEP_SECONDS * self.args.slow_rank_work)
            self.counts["slow_work"] += 1

    def prefill(self, items):
        t0 = time.time()
        time.sleep(STEP_SECONDS * 2)
        self._slow()
        self.counts["prefill_batches"] += 1
        self._event("fake::prefill", t0)
        return [(sum(ids) * 7 + len(ids)) % self.vocab for _, ids in items]

    def decode(self, slots, ids, positions):
        t0 = time.time()
        time.sleep(STEP_SECONDS)
        self._slow()
        self.counts["decode_batches"] += 1
        self._event("fake::decode", t0)
        return [(i * 31 + p + 3) % self.vocab for i, p in zip(ids, positions)], False

    def trace_start(self, activities, with_stack, record_shapes):
        self.events = []

    def trace_stop(self, path):
        data = {"schemaVersion": 1, "fakeEngine": True, "traceEvents": self.events or []}
        with gzip.open(path, "wt") as f:
            json.dump(data, f)
        self.events = None

    def mem_start(self):
        pass

    def mem_dump(self, path):
        with open(path, "wb") as f:
            pickle.dump({"fakeEngine": True}, f)

    def cuda_profiler_start(self):
        self.counts["cuda_profiler_starts"] += 1

    def cuda_profiler_stop(self):
        self.counts["cuda_profiler_stops"] += 1

    def stats(self):
        return dict(self.counts)

    def close(self):
        pass
