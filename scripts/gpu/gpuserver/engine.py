"""One rank's GPU work: the model on its device, prefill and decode (decode replayed from a
CUDA graph per batch size unless --disable-cuda-graph), the layerwise NVTX hooks, the slow
rank's extra work, and the recorders a profile asks for (torch.profiler, cudaProfilerStart
and Stop, the CUDA memory history).

Device and communication: with --tp-size N and at least base_gpu_id + N visible GPUs,
rank r runs on GPU base_gpu_id + r and the ranks all-reduce the row-parallel outputs with
NCCL (NCCL_NVLS_ENABLE=0 is set by rank 0 before the ranks start). With fewer GPUs every
rank runs on base_gpu_id and computes its own shard without combining them ("none"):
NCCL refuses two ranks on one device, and the point of that mode is several processes'
kernels on one GPU, not the numbers (the weights are random).
"""
import os
import time

import torch

from . import model as modelmod
from .args import graph_batch_sizes

SLOW_DIM = 4096  # the slow rank's extra matmul is SLOW_DIM x SLOW_DIM x SLOW_DIM, bf16
SLOW_DIM_CPU = 256


class TorchEngine:
    def __init__(self, rank, args, log):
        t0 = time.time()
        self.rank, self.args, self.log = rank, args, log
        self.cuda = args.device == "cuda"
        if not self.cuda:
            self._init_cpu()
            return
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device (torch %s, CUDA %s): this engine needs a GPU; "
                               "use --engine fake only for tests" % (torch.__version__, torch.version.cuda))
        n = torch.cuda.device_count()
        own = args.tp_size > 1 and args.base_gpu_id + args.tp_size <= n
        if args.base_gpu_id >= n:
            raise RuntimeError("--base-gpu-id %d, but only %d GPU(s) are visible" % (args.base_gpu_id, n))
        self.gpu_id = args.base_gpu_id + rank if own else args.base_gpu_id
        comm = args.comm
        if comm == "auto":
            comm = "nccl" if own else "none"
        if comm == "nccl" and not own:
            raise RuntimeError("--comm nccl needs one GPU per rank (%d ranks from GPU %d), but %d GPU(s) are "
                               "visible; NCCL refuses two ranks on one device: use --comm none or auto"
                               % (args.tp_size, args.base_gpu_id, n))
        self.comm = comm
        torch.cuda.set_device(self.gpu_id)
        self.device = torch.device("cuda", self.gpu_id)
        self.dtype = getattr(torch, args.dtype)
        torch.set_grad_enabled(False)
        reduce = self._init_nccl() if comm == "nccl" else None
        self._build(reduce, SLOW_DIM, torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop)
        if not args.disable_cuda_graph:
            self._capture_graphs()
            self.graph_check = self._check_graphs()
        torch.cuda.synchronize()
        self._ready(t0, torch.cuda.get_device_name(self.device))

    def _init_cpu(self):
        """--device cpu: the same model and steps on torch's CPU backend, for tests on a
        machine without a GPU. No CUDA graphs, NCCL, NVTX (ranges are counted, not pushed),
        cudaProfiler or memory history: those fail as they would on a broken GPU."""
        t0 = time.time()
        self.gpu_id, self.comm = self.args.base_gpu_id, "none"
        self.device = torch.device("cpu")
        self.dtype = getattr(torch, self.args.dtype)
        torch.set_grad_enabled(False)
        self._build(None, SLOW_DIM_CPU, lambda text: None, lambda: None)
        self._ready(t0, "cpu")

    def _build(self, reduce, slow_dim, push, pop):
        args, rank = self.args, self.rank
        self.shape = modelmod.load_shape(args)
        self.model = modelmod.build(self.shape, args, rank, self.device, self.dtype, reduce)
        self.kv = modelmod.KVCache(self.shape.layers, args.max_running_requests, args.context_length,
                                   self.shape.kv_heads // args.tp_size, self.shape.head_dim, self.dtype, self.device)
        self.counts = {"prefill_batches": 0, "decode_batches": 0, "graph_replays": 0, "eager_decodes": 0,
                       "slow_work": 0, "cuda_profiler_starts": 0, "cuda_profiler_stops": 0}
        self.prof = None
        self.slow = None
        if rank == args.slow_rank and args.slow_rank_work > 0:
            g = torch.Generator(device=self.device)
            g.manual_seed(1234)
            a = torch.randn(slow_dim, slow_dim, device=self.device, dtype=self.dtype, generator=g)
            self.slow = (a, torch.empty_like(a))
        self.slow_dim = slow_dim
        self.marker = None
        if args.enable_layerwise_nvtx_marker:
            self.marker = modelmod.LayerwiseMarker(push, pop)
            self.marker.register(self.model, module_prefix="model")
        self.graphs = {}
        self.graph_check = None

    def _ready(self, t0, device_name):
        args = self.args
        self.log("rank %d ready in %.1f s: pid %d, GPU %d (%s), comm %s, model %s: %d layers, hidden %d, %.0fM "
                 "parameters on this rank, %s; cuda graph: %s%s%s" % (
                     self.rank, time.time() - t0, os.getpid(), self.gpu_id, device_name, self.comm,
                     self.shape.source, self.shape.layers, self.shape.hidden,
                     modelmod.param_count(self.model) / 1e6, args.dtype, sorted(self.graphs) if self.graphs else False,
                     ", layerwise NVTX" if args.enable_layerwise_nvtx_marker else "",
                     ", slow rank (+%d matmuls of %d^3 per step)" % (args.slow_rank_work, self.slow_dim)
                     if self.slow else ""))
        if self.graph_check and self.graph_check["equal"] != self.graph_check["tokens"]:
            self.log("WARNING: graph replay and eager decode disagree on %d of %d tokens (%s)" % (
                self.graph_check["tokens"] - self.graph_check["equal"], self.graph_check["tokens"], self.graph_check))

    def _init_nccl(self):
        import torch.distributed as dist
        kw = dict(backend="nccl", init_method="tcp://127.0.0.1:%d" % self.args.dist_port, rank=self.rank,
                  world_size=self.args.tp_size)
        try:
            dist.init_process_group(device_id=self.device, **kw)
        except TypeError:  # torch before 2.3 has no device_id
            dist.init_process_group(**kw)
        t = torch.ones(1, device=self.device)
        dist.all_reduce(t)  # the communicator exists before any graph capture uses it
        torch.cuda.synchronize()
        if int(t.item()) != self.args.tp_size:
            raise RuntimeError("NCCL warm-up all-reduce gave %s, want %d" % (t.item(), self.args.tp_size))
        v = torch.cuda.nccl.version()
        self.log("NCCL process group of %d ranks up (NCCL %s, NCCL_NVLS_ENABLE=%s)" % (
            self.args.tp_size, ".".join(map(str, v)) if isinstance(v, tuple) else v,
            os.environ.get("NCCL_NVLS_ENABLE")))
        return modelmod.AllReduce()

    # ---- CUDA graphs ----

    def _capture_graphs(self):
        sizes = graph_batch_sizes(self.args.cuda_graph_max_bs, self.args.max_running_requests)
        pool = None
        for bs in reversed(sizes):  # largest first: smaller graphs reuse its memory pool
            ids = torch.zeros(bs, dtype=torch.long, device=self.device)
            pos = torch.zeros(bs, dtype=torch.long, device=self.device)
            slots = torch.full((bs,), self.kv.scratch, dtype=torch.long, device=self.device)
            s = torch.cuda.Stream(self.device)
            s.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(s):
                for _ in range(2):
                    self._decode_forward(ids, pos, slots)
            torch.cuda.current_stream(self.device).wait_stream(s)
            g = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(g, pool=pool):
                    out = self._decode_forward(ids, pos, slots)
            except Exception as e:
                raise RuntimeError("CUDA graph capture of decode batch size %d failed (comm %s): %s; run with "
                                   "--disable-cuda-graph" % (bs, self.comm, e)) from e
            pool = g.pool()
            self.graphs[bs] = (g, ids, pos, slots, out)

    def _decode_forward(self, ids, pos, slots):
        return self.model(ids, pos, modelmod.Batch(self.kv, True, slots=slots, positions=pos))

    def _graph_for(self, n):
        for bs in sorted(self.graphs):
            if bs >= n:
                return bs
        return None

    def _check_graphs(self):
        """Replay each graph and run the same batch eagerly: the same kernels on the same
        inputs give the same tokens. Run once at start, on free slots."""
        equal = total = 0
        for bs in sorted(self.graphs):
            ids = [(7 * i + 11) % self.shape.vocab for i in range(bs)]
            pos = [i % 5 for i in range(bs)]
            slots = list(range(bs))  # graph sizes never exceed --max-running-requests: all distinct
            a = self._replay(bs, slots, ids, pos)
            b = self._decode_forward(*self._tensors(ids, pos, slots)).tolist()
            equal += sum(x == y for x, y in zip(a, b))
            total += bs
        return {"tokens": total, "equal": equal}

    def _tensors(self, ids, pos, slots):
        d = self.device
        return (torch.tensor(ids, dtype=torch.long, device=d), torch.tensor(pos, dtype=torch.long, device=d),
                torch.tensor(slots, dtype=torch.long, device=d))

    def _replay(self, bs, slots, ids, pos):
        g, ids_t, pos_t, slots_t, out = self.graphs[bs]
        n = len(ids)
        pad = bs - n
        a, b, c = self._tensors(list(ids) + [0] * pad, list(pos) + [0] * pad, list(slots) + [self.kv.scratch] * pad)
        ids_t.copy_(a)
        pos_t.copy_(b)
        slots_t.copy_(c)
        g.replay()
        self.counts["graph_replays"] += 1
        return out[:n].tolist()

    # ---- steps ----

    def _slow_work(self):
        if self.slow is not None:
            a, out = self.slow
            for _ in range(self.args.slow_rank_work):
                torch.matmul(a, a, out=out)
            self.counts["slow_work"] += 1

    def prefill(self, items):
        outs = []
        for slot, ids in items:
            # ids come checked against --vocab-size; a --model-path config may have fewer
            ids_t = torch.tensor(ids, dtype=torch.long, device=self.device).clamp_(max=self.shape.vocab - 1)
            pos_t = torch.arange(len(ids), device=self.device)
            outs.append(self.model(ids_t, pos_t, modelmod.Batch(self.kv, False, slot=slot)))
        self._slow_work()
        self.counts["prefill_batches"] += 1
        return torch.cat(outs).tolist()

    def decode(self, slots, ids, positions):
        bs = self._graph_for(len(ids))
        if bs is not None:
            out = self._replay(bs, slots, ids, positions)
        else:
            out = self._decode_forward(*self._tensors(ids, positions, slots))
            self.counts["eager_decodes"] += 1
        self._slow_work()
        self.counts["decode_batches"] += 1
        if not isinstance(out, list):
            out = out.tolist()
        return out, bs is not None

    # ---- profiling ----

    def trace_start(self, activities, with_stack, record_shapes):
        if not self.cuda and "GPU" in activities:
            self.log("no GPU activity on --device cpu: recording CPU only")
            activities = ["CPU"]
        acts = [{"CPU": torch.profiler.ProfilerActivity.CPU, "GPU": torch.profiler.ProfilerActivity.CUDA}[a]
                for a in activities]
        self.prof = torch.profiler.profile(activities=acts,
                                           with_stack=True if with_stack is None else with_stack,
                                           record_shapes=False if record_shapes is None else record_shapes)
        self.prof.start()

    def trace_stop(self, path):
        prof, self.prof = self.prof, None
        prof.stop()
        prof.export_chrome_trace(path)  # a .gz name is written gzipped

    def mem_start(self):
        self._need_cuda("the CUDA memory history (MEM)")
        torch.cuda.memory._record_memory_history(max_entries=100000)

    def mem_dump(self, path):
        torch.cuda.memory._dump_snapshot(path)
        torch.cuda.memory._record_memory_history(enabled=None)

    def _need_cuda(self, what):
        if not self.cuda:
            raise RuntimeError("%s needs a GPU (--device cpu)" % what)

    def cuda_profiler_start(self):
        self._need_cuda("cudaProfilerStart")
        torch.cuda.synchronize(self.device)
        torch.cuda.cudart().cudaProfilerStart()
        self.counts["cuda_profiler_starts"] += 1

    def cuda_profiler_stop(self):
        self._need_cuda("cudaProfilerStop")
        torch.cuda.synchronize(self.device)
        torch.cuda.cudart().cudaProfilerStop()
        self.counts["cuda_profiler_stops"] += 1

    # ---- the rest ----

    def info(self):
        return {"engine": "torch", "device": str(self.device), "gpu_id": self.gpu_id, "comm": self.comm,
                "gpu_name": torch.cuda.get_device_name(self.device) if self.cuda else "cpu",
                "torch": torch.__version__,
                "cuda": torch.version.cuda, "cuda_graph": bool(self.graphs), "graph_batch_sizes": sorted(self.graphs),
                "graph_check": self.graph_check, "layerwise_nvtx": bool(self.args.enable_layerwise_nvtx_marker),
                "model": {"source": self.shape.source, "layers": self.shape.layers, "hidden": self.shape.hidden,
                          "heads": self.shape.heads, "kv_heads": self.shape.kv_heads, "vocab": self.shape.vocab,
                          "params_this_rank": modelmod.param_count(self.model)}}

    def stats(self):
        s = dict(self.counts)
        s["nvtx_ranges"] = self.marker.pushed if self.marker else 0
        return s

    def close(self):
        if self.prof is not None:
            try:
                self.prof.stop()
            except Exception:
                pass
            self.prof = None
        if self.cuda:
            torch.cuda.synchronize(self.device)
        if self.comm == "nccl":
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
