"""Command-line arguments. SGLang's names where SGLang has the flag (--tp-size/--tp,
--port, --disable-cuda-graph, --enable-layerwise-nvtx-marker, --cuda-graph-max-bs,
--max-running-requests, --context-length, --decode-log-interval, --enable-metrics,
--base-gpu-id, --random-seed, --served-model-name, --model-path); the model's shape and
the test knobs (--slow-rank, --comm, --background-requests, --self-check) are this
server's own."""
import argparse

DEFAULT_MODEL = "nsys-agent/random-llama"
BACKGROUND_PROMPT = 48  # tokens in a synthetic request's prompt


class ArgError(ValueError):
    """A flag combination the server cannot run."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="server.py",
        description="A small GPU decoder server that speaks SGLang's HTTP API (nsys-agent's GPU validation).")
    a = p.add_argument
    a("--model-path", default=DEFAULT_MODEL,
      help="a local dir with a transformers config.json to take the model's shape from (never weights: "
           "they are random); anything else is only the name the API reports")
    a("--served-model-name", default=None, help="name in /v1/models and metrics (default: --model-path)")
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=30000, help="0: any free port (see --port-file)")
    a("--port-file", default=None, help="write the port here once the server answers (for scripts)")
    a("--tp-size", "--tp", "--tensor-parallel-size", dest="tp_size", type=int, default=1,
      help="rank processes; one per visible GPU when there are enough, else all on --base-gpu-id")
    a("--base-gpu-id", type=int, default=0)
    a("--comm", choices=["auto", "nccl", "none"], default="auto",
      help="how ranks combine row-parallel outputs: nccl all-reduce (one GPU per rank), or none "
           "(ranks share a GPU; NCCL cannot run two ranks on one device); auto picks")
    a("--disable-cuda-graph", action="store_true", help="decode eagerly (layerwise NVTX needs it)")
    a("--cuda-graph-max-bs", type=int, default=16, help="largest decode batch captured in a CUDA graph")
    a("--enable-layerwise-nvtx-marker", action="store_true",
      help="an NVTX range per module, with SGLang's dict text (graph replays emit none)")
    a("--cuda-profiler-ranks", choices=["first", "all"], default="first",
      help="which ranks call cudaProfilerStart/Stop for CUDA_PROFILER: first = only the ranks on "
           "--base-gpu-id (newer SGLang: gpu_id == base_gpu_id), all = every rank (older SGLang)")
    a("--max-running-requests", type=int, default=16)
    a("--context-length", type=int, default=512, help="longest prompt + output, per request")
    a("--decode-log-interval", type=int, default=40, help="decode steps per 'Decode batch' line (SGLang's 40)")
    a("--enable-metrics", action="store_true", help="serve Prometheus text at /metrics")
    a("--random-seed", type=int, default=0)
    a("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    # The model's shape (a Llama-like decoder) when --model-path has no config.json.
    a("--num-layers", type=int, default=8)
    a("--hidden-size", type=int, default=2048)
    a("--intermediate-size", type=int, default=5632)
    a("--num-attention-heads", type=int, default=16)
    a("--num-key-value-heads", type=int, default=8)
    a("--vocab-size", type=int, default=32000)
    # Test knobs.
    a("--slow-rank", type=int, default=-1, help="this rank does extra GPU work every step (-1: none)")
    a("--slow-rank-work", type=int, default=4,
      help="extra 4096x4096 matmuls per step on --slow-rank")
    a("--background-requests", type=int, default=0,
      help="keep this many synthetic requests running, so steps happen without clients")
    a("--background-max-tokens", type=int, default=128)
    a("--step-overhead-ms", type=float, default=0.0,
      help="CPU time rank 0 spends per batch besides the forward (a sleep), as a real scheduler does "
           "(batching, sampling, detokenizing: milliseconds): keeps a capture's kernel rate near a real "
           "server's; 0 = none")
    a("--engine", choices=["torch", "fake"], default="torch",
      help="fake: the CPU stand-in for tests on machines without torch (no GPU work, no kernels)")
    a("--device", choices=["cuda", "cpu"], default="cuda",
      help="cpu: the torch engine on torch's CPU backend, for tests without a GPU (implies "
           "--disable-cuda-graph; no NCCL, NVTX, cudaProfiler or MEM)")
    a("--self-check", action="store_true",
      help="start on a free port, exercise every route and profiling mode, print PASS/FAIL, exit")
    a("--self-check-dir", default=None, help="where the self-check's traces go (default: a temp dir, removed)")
    return p


def parse(argv=None):
    """Parse and check argv; raises ArgError with what to change."""
    args = build_parser().parse_args(argv)
    check(args)
    if args.served_model_name is None:
        args.served_model_name = args.model_path
    return args


def check(args):
    if args.device == "cpu":
        if args.comm == "nccl":
            raise ArgError("--comm nccl needs --device cuda")
        args.disable_cuda_graph = True
    if args.tp_size < 1:
        raise ArgError("--tp-size %d: want 1 or more rank processes" % args.tp_size)
    if not (args.slow_rank == -1 or 0 <= args.slow_rank < args.tp_size):
        raise ArgError("--slow-rank %d: want -1 (none) or a rank in 0..%d (--tp-size %d)"
                       % (args.slow_rank, args.tp_size - 1, args.tp_size))
    if args.slow_rank_work < 0:
        raise ArgError("--slow-rank-work %d: want 0 or more" % args.slow_rank_work)
    h, nh, nkv = args.hidden_size, args.num_attention_heads, args.num_key_value_heads
    if nh < 1 or nkv < 1 or h % nh:
        raise ArgError("--hidden-size %d must split into --num-attention-heads %d heads" % (h, nh))
    if nh % nkv:
        raise ArgError("--num-attention-heads %d must be a multiple of --num-key-value-heads %d" % (nh, nkv))
    for name, n in (("--num-attention-heads", nh), ("--num-key-value-heads", nkv),
                    ("--intermediate-size", args.intermediate_size)):
        if n % args.tp_size:
            raise ArgError("%s %d does not split over --tp-size %d ranks; pick sizes divisible by it"
                           % (name, n, args.tp_size))
    if args.max_running_requests < 1:
        raise ArgError("--max-running-requests must be 1 or more")
    if args.context_length < 8:
        raise ArgError("--context-length %d: want at least 8" % args.context_length)
    if args.cuda_graph_max_bs < 1:
        raise ArgError("--cuda-graph-max-bs must be 1 or more (use --disable-cuda-graph to decode eagerly)")
    if args.decode_log_interval < 1:
        raise ArgError("--decode-log-interval must be 1 or more")
    if args.background_requests < 0 or args.background_requests > args.max_running_requests:
        raise ArgError("--background-requests %d: want 0..--max-running-requests (%d)"
                       % (args.background_requests, args.max_running_requests))
    if args.background_requests and not 1 <= args.background_max_tokens <= args.context_length - BACKGROUND_PROMPT:
        raise ArgError("--background-max-tokens %d: want 1..%d (a synthetic request's %d prompt tokens and its "
                       "output must fit --context-length %d)" % (args.background_max_tokens,
                                                                 args.context_length - BACKGROUND_PROMPT,
                                                                 BACKGROUND_PROMPT, args.context_length))
    if not 0 <= args.step_overhead_ms <= 1000:
        raise ArgError("--step-overhead-ms %g: want 0..1000" % args.step_overhead_ms)
    if args.vocab_size < 260:
        raise ArgError("--vocab-size %d: the byte tokenizer needs at least 260 ids" % args.vocab_size)
    if not 0 <= args.port <= 65535:
        raise ArgError("--port %d: want 0..65535" % args.port)


def graph_batch_sizes(max_bs, max_running):
    """The decode batch sizes captured in CUDA graphs: 1, 2, 4, 8, then every 8 up to
    min(--cuda-graph-max-bs, --max-running-requests); a batch runs in the smallest one that
    holds it (padded)."""
    top = min(max_bs, max_running)
    sizes = [b for b in (1, 2, 4) if b <= top]
    b = 8
    while b <= top:
        sizes.append(b)
        b += 8
    if top not in sizes:
        sizes.append(top)
    return sorted(set(sizes))


def server_info_args(args):
    """The server arguments /get_server_info reports, under SGLang's names."""
    return {
        "model_path": args.model_path,
        "tokenizer_path": args.model_path,
        "served_model_name": args.served_model_name,
        "host": args.host,
        "port": args.port,
        "tp_size": args.tp_size,
        "dp_size": 1,
        "pp_size": 1,
        "ep_size": 1,
        "base_gpu_id": args.base_gpu_id,
        "device": "cpu" if args.engine == "fake" else args.device,
        "dtype": args.dtype,
        "disable_cuda_graph": args.disable_cuda_graph,
        "cuda_graph_max_bs": args.cuda_graph_max_bs,
        "enable_layerwise_nvtx_marker": args.enable_layerwise_nvtx_marker,
        "max_running_requests": args.max_running_requests,
        "context_length": args.context_length,
        "decode_log_interval": args.decode_log_interval,
        "enable_metrics": args.enable_metrics,
        "random_seed": args.random_seed,
        "skip_tokenizer_init": False,
    }
