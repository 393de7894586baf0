"""SGLang's profiling state machine (python/sglang/srt/managers/scheduler_profiler_mixin.py),
run by rank 0's scheduler; the ranks do what it decides (gpuserver.workers.RankRuntime).

What it reproduces, quirks included:
  - /start_profile without start_step or profile_by_stage starts at once, between two
    batches; with either, it only arms, and the start happens in the batch predicate.
  - A refused request ("already in progress", "not in progress") is HTTP 500 with the
    message; a pending start_step does not count as in progress (a stop before it fires is
    refused, a second start replaces it).
  - The batch predicate runs after forward_ct += 1 and before the batch: it stops when
    target <= forward_ct, then starts when start == forward_ct. So num_steps N started at
    once records N-1 batches, and N batches when started by start_step.
  - profile_by_stage: EXTEND from the first prefill batch, DECODE from the first decode
    batch (which first closes EXTEND), each for num_steps batches, written with a stage
    suffix.
  - Steps are batches: an idle server takes none, so a window bounded by num_steps ends
    only when requests run.
Where SGLang would crash or write outside output_dir, this server refuses instead (500):
profile_by_stage without num_steps, RPD (ROCm), merge_profiles and profile_stages (not
implemented here), a profile_prefix with a path separator.
"""
import os

from . import naming

ACTIVITIES = ("CPU", "GPU", "MEM", "RPD", "CUDA_PROFILER")
TORCH_ACTIVITIES = ("CPU", "GPU")


class RequestError(Exception):
    """A /start_profile body that cannot be taken; status and body are the answer."""

    def __init__(self, status, body):
        super().__init__(body if isinstance(body, str) else str(body))
        self.status = status
        self.body = body


def _field(body, name, kinds, default=None):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) and bool not in kinds:  # JSON true is not a step count
        raise RequestError(422, _detail(name, "expected %s" % kinds[0].__name__))
    if not isinstance(v, kinds):
        raise RequestError(422, _detail(name, "expected %s" % kinds[0].__name__))
    return v


def _detail(field, msg):
    """FastAPI's validation error shape."""
    return {"detail": [{"type": "type_error", "loc": ["body", field], "msg": msg}]}


def parse_request(body, env=None):
    """SGLang's ProfileReqInput from a JSON object (None or {}: all defaults). Raises
    RequestError."""
    env = os.environ if env is None else env
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RequestError(422, _detail("body", "expected a JSON object"))
    req = {
        "output_dir": _field(body, "output_dir", (str,)),
        "start_step": _field(body, "start_step", (int,)),
        "num_steps": _field(body, "num_steps", (int,)),
        "activities": _field(body, "activities", (list,)),
        "with_stack": _field(body, "with_stack", (bool,)),
        "record_shapes": _field(body, "record_shapes", (bool,)),
        "profile_by_stage": _field(body, "profile_by_stage", (bool,), False),
        "merge_profiles": _field(body, "merge_profiles", (bool,), False),
        "profile_prefix": _field(body, "profile_prefix", (str,), ""),
        "profile_id": _field(body, "profile_id", (str,)),
        "profile_stages": _field(body, "profile_stages", (list,)),
    }
    if req["activities"] is not None and not all(isinstance(a, str) for a in req["activities"]):
        raise RequestError(422, _detail("activities", "expected a list of strings"))
    for k in ("start_step", "num_steps"):
        if req[k] is not None and req[k] < 0:
            raise RequestError(400, "%s must not be negative." % k)
    if not naming.valid_prefix(req["profile_prefix"]):
        raise RequestError(500, "profile_prefix must be a plain file name prefix, without path separators.")
    if req["profile_id"] is not None and (not naming.valid_prefix(req["profile_id"]) or "-" in req["profile_id"]):
        raise RequestError(500, "profile_id must be a plain name without '-' or path separators.")
    if req["merge_profiles"]:
        raise RequestError(500, "merge_profiles is not implemented by this server; merge the per-rank traces "
                                "with 'nsys-agent merge'.")
    if req["profile_stages"]:
        raise RequestError(500, "profile_stages (SGLANG_PROFILE_V2) is not implemented by this server; use "
                                "profile_by_stage.")
    acts = req["activities"] if req["activities"] is not None else ["CPU", "GPU"]
    if "RPD" in acts:
        raise RequestError(500, "RPD needs ROCm's rpdTracerControl; this server runs CUDA.")
    if req["profile_by_stage"] and not req["num_steps"]:
        raise RequestError(500, "profile_by_stage needs num_steps (SGLang would fail on its first batch).")
    if req["output_dir"] is None:
        req["output_dir"] = env.get("SGLANG_TORCH_PROFILER_DIR", "/tmp")
    req["output_dir"] = os.path.expanduser(req["output_dir"])
    req["activities"] = acts
    return req


def spec_of(req, profile_id):
    """What every rank needs to record and write one profile (picklable)."""
    return {
        "output_dir": req["output_dir"],
        "activities": list(req["activities"]),
        "with_stack": req["with_stack"],
        "record_shapes": req["record_shapes"],
        "profile_id": profile_id,
        "prefix": req["profile_prefix"],
    }


def starts_anything(activities):
    """Whether SGLang's start_profile sets profile_in_progress for these activities
    (unknown names are ignored, silently)."""
    return any(a in activities for a in ("CPU", "GPU", "MEM", "CUDA_PROFILER"))


class Profiler:
    """Rank 0's profiling state. ranks has profile_start(spec, stage) and
    profile_stop(spec, stage) -> [files], each run on every rank at the same step
    boundary. new_id makes a profile id when the request has none."""

    def __init__(self, ranks, new_id=naming.new_profile_id):
        self.ranks = ranks
        self.new_id = new_id
        self.in_progress = False
        self.spec = None
        self.start_ct = None
        self.target_ct = None
        self.by_stage = False
        self.prefill_ct = self.decode_ct = None
        self.target_prefill = self.target_decode = None
        self.last_files = []
        self.windows = 0  # profiles started, for stats

    def handle_start(self, req, forward_ct):
        """A parsed /start_profile between two batches. Returns (status, text)."""
        if self.in_progress:
            return 500, "Profiling is already in progress. Call /stop_profile first."
        self.by_stage = req["profile_by_stage"]
        self.spec = spec_of(req, req["profile_id"] or self.new_id())
        start_step, num_steps = req["start_step"], req["num_steps"]
        self.start_ct = max(start_step, forward_ct + 1) if start_step else None
        self.target_ct = None
        if num_steps:
            if self.by_stage:
                self.prefill_ct = self.decode_ct = 0
                self.target_prefill = self.target_decode = num_steps
            elif start_step:
                self.target_ct = self.start_ct + num_steps
            else:
                self.target_ct = forward_ct + num_steps
        if self.by_stage or start_step:
            return 200, "Start profiling.\n"
        self._start(None)
        return 200, "Start profiling.\n"

    def handle_stop(self):
        """/stop_profile between two batches: writes every rank's files, then answers."""
        if not self.in_progress:
            return 500, "Profiling is not in progress. Call /start_profile first."
        self._stop(None)
        return 200, "Stop profiling. This will take some time.\n"

    def before_batch(self, forward_ct, is_prefill):
        """SGLang's _profile_batch_predicate, called after forward_ct += 1."""
        if self.by_stage:
            if is_prefill:
                if self.prefill_ct == 0:
                    self._start(naming.STAGE_EXTEND)
                self.prefill_ct += 1
                if self.prefill_ct > self.target_prefill and self.in_progress:
                    self._stop(naming.STAGE_EXTEND)
            else:
                if self.decode_ct == 0:
                    if self.in_progress:
                        self._stop(naming.STAGE_EXTEND)  # flush the prefill trace
                    self._start(naming.STAGE_DECODE)
                self.decode_ct += 1
                if self.decode_ct > self.target_decode and self.in_progress:
                    self._stop(naming.STAGE_DECODE)
            return
        if self.target_ct and self.target_ct <= forward_ct and self.in_progress:
            self._stop(None)
        if self.start_ct and self.start_ct == forward_ct:
            self._start(None)

    def _start(self, stage):
        self.ranks.profile_start(self.spec, stage)
        if starts_anything(self.spec["activities"]):
            self.in_progress = True
            self.windows += 1

    def _stop(self, stage):
        self.last_files = self.ranks.profile_stop(self.spec, stage)
        self.in_progress = False
        self.start_ct = None

    def state(self):
        return {"profile_in_progress": self.in_progress,
                "profile_armed": self.start_ct is not None and not self.in_progress,
                "profiles_started": self.windows,
                "last_profile_files": list(self.last_files)}
