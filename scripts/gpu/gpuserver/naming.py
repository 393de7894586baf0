"""Names and texts that must match SGLang's byte for byte: per-rank trace and memory
snapshot file names, profile ids, log line formats and the layerwise NVTX range text.

Read in SGLang's python/sglang/srt/managers/scheduler_profiler_mixin.py (file names,
"Profiling starts/done" lines), scheduler_metrics_mixin.py (prefill and decode lines;
real ones are in the project's seeds), and utils/nvtx_pytorch_hooks.py (range text).
"""
import datetime
import time

TRACE_SUFFIX = ".trace.json.gz"

# SGLang's ForwardMode names used as stage suffixes when profiling by stage.
STAGE_EXTEND = "EXTEND"
STAGE_DECODE = "DECODE"
STAGES = (STAGE_EXTEND, STAGE_DECODE)


def new_profile_id(now=None):
    """SGLang's default profile id: str(time.time()) in the tokenizer manager."""
    return str(time.time() if now is None else now)


def trace_file_name(profile_id, tp_rank, prefix="", stage=None, dp=None, pp=None, ep=None):
    """The per-rank torch-profiler trace name SGLang writes:
    [{prefix}-]{profile_id}-TP-{tp}[-DP-{dp}][-PP-{pp}][-EP-{ep}][-{stage}].trace.json.gz.
    DP/PP/EP appear only when that size is above 1 (pass None otherwise)."""
    parts = [str(profile_id), "TP-%d" % tp_rank]
    for name, value in (("DP", dp), ("PP", pp), ("EP", ep)):
        if value is not None:
            parts.append("%s-%d" % (name, value))
    head = (prefix + "-") if prefix else ""
    tail = ("-" + stage) if stage else ""
    return head + "-".join(parts) + tail + TRACE_SUFFIX


def memory_file_name(tp_rank, stage=None, now=None):
    """SGLang's MEM snapshot name: {time.time()}-TP-{tp}-memory[-{stage}].pickle (its own
    time stamp, not the profile id)."""
    tail = ("-" + stage) if stage else ""
    return "%s-TP-%d-memory%s.pickle" % (time.time() if now is None else now, tp_rank, tail)


def valid_prefix(prefix):
    """A profile_prefix becomes part of a file name: no path separators, no NUL, not . or
    .. (SGLang would join anything into the path; this server never writes outside
    output_dir)."""
    return not any(c in prefix for c in "/\\\x00") and prefix not in (".", "..")


def log_prefix(tp_rank, tp_size, now=None):
    """SGLang's logging prefix: "[2026-01-01 09:19:37 TP0] ", the TP tag only when
    tp_size > 1 (configure_logger with prefix " TP{rank}")."""
    t = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    tag = (" TP%d" % tp_rank) if tp_size > 1 else ""
    return "[%s%s] " % (t.strftime("%Y-%m-%d %H:%M:%S"), tag)


def prefill_line(new_seq, new_token, cached_token, token_usage, running_req, queue_req):
    return ("Prefill batch, #new-seq: %d, #new-token: %d, #cached-token: %d, token usage: %.2f, "
            "#running-req: %d, #queue-req: %d," % (new_seq, new_token, cached_token, token_usage,
                                                    running_req, queue_req))


def decode_line(running_req, tokens, token_usage, cuda_graph, gen_throughput, queue_req):
    return ("Decode batch, #running-req: %d, #token: %d, token usage: %.2f, cuda graph: %s, "
            "gen throughput (token/s): %.2f, #queue-req: %d," % (running_req, tokens, token_usage,
                                                                  bool(cuda_graph), gen_throughput,
                                                                  queue_req))


def profiling_starts_line(output_dir, profile_id, stage=None):
    stage_str = (" for %s" % stage) if stage else ""
    return "Profiling starts%s. Traces will be saved to: %s (with profile id: %s)" % (
        stage_str, output_dir, profile_id)


def stop_profiling_line(stage=None):
    return "Stop profiling" + (("-" + stage) if stage else "") + "..."


def profiling_done_line(output_dir):
    return "Profiling done. Traces are saved to: %s" % output_dir


def layer_marker(module_name, trainable_params=None, inputs=None, static_params=None):
    """The NVTX range text of SGLang's --enable-layerwise-nvtx-marker: the Python repr of
    a dict with "Module", then "TrainableParams" ({name: shape}) when the module has
    parameters of its own, "Inputs" (shapes of the tensor arguments) when there are any,
    and "StaticParams" (e.g. in/out features of a Linear) when known. Shapes are lists of
    ints."""
    d = {"Module": module_name}
    if trainable_params:
        d["TrainableParams"] = dict(trainable_params)
    if inputs:
        d["Inputs"] = list(inputs)
    if static_params:
        d["StaticParams"] = dict(static_params)
    return "{}".format(d)
