"""Rank 0's scheduler loop: continuous batching of generation requests, one batch per
step (a prefill of the waiting requests, else one decode step of the running ones), with
SGLang's step counter (forward_ct), its profiling predicate and its log lines. HTTP
threads talk to it only through its inbox, so every profiling command lands between two
batches, as in SGLang's event loop.
"""
import collections
import concurrent.futures
import itertools
import queue
import threading
import time

from . import naming
from .args import BACKGROUND_PROMPT
from .profiler import Profiler
from .ranks import RankError

PREFILL_TOKEN_BUDGET = 8192  # prompt tokens per prefill batch (at least one request)


class ShuttingDown(Exception):
    """The server stopped before the request was answered."""


class Req:
    """One generation request."""
    _ids = itertools.count(1)

    def __init__(self, prompt_ids, max_new_tokens, ignore_eos=False, synthetic=False, eos_id=2):
        self.rid = next(Req._ids)
        self.prompt_ids = list(prompt_ids)
        self.max_new_tokens = max_new_tokens
        self.ignore_eos = ignore_eos
        self.synthetic = synthetic
        self.eos_id = eos_id
        self.out_ids = []
        self.slot = None
        self.finish_reason = None
        self.error = None
        self.done = threading.Event()
        self.created = time.time()

    def seq_len(self):
        return len(self.prompt_ids) + len(self.out_ids)

    def finished(self):
        if len(self.out_ids) >= self.max_new_tokens:
            self.finish_reason = "length"
            return True
        if self.out_ids and self.out_ids[-1] == self.eos_id and not self.ignore_eos:
            self.finish_reason = "stop"
            return True
        return False


class Scheduler:
    def __init__(self, args, ranks, log, clock=time.monotonic):
        self.args = args
        self.ranks = ranks
        self.log = log
        self.clock = clock
        self.inbox = queue.Queue()
        self.waiting = collections.deque()
        self.running = []
        self.free_slots = list(range(args.max_running_requests))
        self.max_total_tokens = args.max_running_requests * args.context_length
        self.forward_ct = 0
        self.profiler = Profiler(ranks)
        # Counters: the log lines, /get_server_info and /metrics read them.
        self.gen_tokens_total = 0
        self.prompt_tokens_total = 0
        self.requests_total = 0
        self.last_gen_throughput = 0.0
        self.decode_steps = 0
        self.graph_steps = 0
        self._log_tokens = 0
        self._log_steps = 0
        self._log_tic = clock()
        self._stopping = threading.Event()

    # ---- called from other threads ----

    def submit(self, req):
        if self._stopping.is_set():
            raise ShuttingDown()
        self.inbox.put(("gen", req))

    def call(self, fn, timeout=None):
        """Run fn() on the scheduler thread between two batches and return its result."""
        if self._stopping.is_set():
            raise ShuttingDown()
        fut = concurrent.futures.Future()
        self.inbox.put(("call", fn, fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.CancelledError:
            raise ShuttingDown()

    def stop(self):
        self._stopping.set()

    # ---- the loop ----

    def run(self):
        """Steps until stop(); a rank failure propagates (the server cannot go on)."""
        try:
            while not self._stopping.is_set():
                self._top_up_background()
                self._drain(block=not self._has_work())
                if self._has_work():
                    self.step()
        finally:
            self._stopping.set()
            self._fail_all()

    def _has_work(self):
        return bool(self.running) or (bool(self.waiting) and bool(self.free_slots))

    def _drain(self, block):
        try:
            item = self.inbox.get(timeout=0.02) if block else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item):
        if item[0] == "gen":
            self.waiting.append(item[1])
            return
        _, fn, fut = item
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except RankError as e:  # the caller gets it, and the loop ends: no TP group without a rank
            fut.set_exception(e)
            raise
        except Exception as e:
            fut.set_exception(e)

    def _top_up_background(self):
        want = self.args.background_requests
        if not want:
            return
        have = sum(1 for r in itertools.chain(self.waiting, self.running) if r.synthetic)
        for i in range(want - have):
            prompt = [1] + [3 + (97 + (self.requests_total + i + k) % 26) for k in range(BACKGROUND_PROMPT - 1)]
            self.waiting.append(Req(prompt, self.args.background_max_tokens, ignore_eos=True, synthetic=True))

    def step(self):
        """One batch: a prefill when requests wait and slots are free, else a decode."""
        if self.waiting and self.free_slots:
            self._prefill()
        elif self.running:
            self._decode()
        else:
            return
        if self.args.step_overhead_ms:
            time.sleep(self.args.step_overhead_ms / 1000.0)

    def _prefill(self):
        batch, tokens = [], 0
        while self.waiting and self.free_slots:
            r = self.waiting[0]
            if batch and tokens + len(r.prompt_ids) > PREFILL_TOKEN_BUDGET:
                break
            self.waiting.popleft()
            r.slot = self.free_slots.pop(0)
            batch.append(r)
            tokens += len(r.prompt_ids)
        running_before = len(self.running)
        self.forward_ct += 1
        self.profiler.before_batch(self.forward_ct, True)
        out = self.ranks.prefill([(r.slot, r.prompt_ids) for r in batch])
        for r, t in zip(batch, out):
            r.out_ids.append(t)
            self.prompt_tokens_total += len(r.prompt_ids)
            self.gen_tokens_total += 1
            self.requests_total += 1
        self.running.extend(batch)
        self.log(naming.prefill_line(len(batch), tokens, 0, self.token_usage(), running_before, len(self.waiting)))
        self._finish()

    def _decode(self):
        batch = self.running
        self.forward_ct += 1
        self.profiler.before_batch(self.forward_ct, False)
        # The token fed is the last one generated, at the position after everything before it.
        out = self.ranks.decode([r.slot for r in batch], [r.out_ids[-1] for r in batch],
                                [r.seq_len() - 1 for r in batch])
        graph = bool(getattr(self.ranks, "last_graph", False))
        for r, t in zip(batch, out):
            r.out_ids.append(t)
        n = len(batch)
        self.gen_tokens_total += n
        self.decode_steps += 1
        self.graph_steps += graph
        self._log_tokens += n
        self._log_steps += 1
        if self._log_steps >= self.args.decode_log_interval:
            now = self.clock()
            self.last_gen_throughput = self._log_tokens / max(now - self._log_tic, 1e-9)
            self.log(naming.decode_line(n, self.kv_tokens(), self.token_usage(), graph, self.last_gen_throughput,
                                        len(self.waiting)))
            self._log_tokens = self._log_steps = 0
            self._log_tic = now
        self._finish()

    def _finish(self):
        keep = []
        for r in self.running:
            if r.finished() or r.seq_len() >= self.args.context_length:
                if r.finish_reason is None:
                    r.finish_reason = "length"
                self.free_slots.append(r.slot)
                r.done.set()
            else:
                keep.append(r)
        self.running = keep

    def _fail_all(self):
        for r in list(self.waiting) + self.running:
            r.error = "The server is shutting down."
            r.done.set()
        self.waiting.clear()
        self.running = []
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "gen":
                item[1].error = "The server is shutting down."
                item[1].done.set()
            else:
                item[2].cancel()

    def kv_tokens(self):
        return sum(r.seq_len() for r in self.running)

    def token_usage(self):
        return self.kv_tokens() / self.max_total_tokens

    def state(self):
        s = {"forward_ct": self.forward_ct, "last_gen_throughput": round(self.last_gen_throughput, 2),
             "num_running_reqs": len(self.running), "num_queue_reqs": len(self.waiting),
             "gen_tokens_total": self.gen_tokens_total, "prompt_tokens_total": self.prompt_tokens_total,
             "requests_total": self.requests_total, "decode_steps": self.decode_steps,
             "graph_decode_steps": self.graph_steps}
        s.update(self.profiler.state())
        return s
