"""SGLang's HTTP API on the standard library's threading HTTP server.

Routes and answers follow SGLang's http_server.py (FastAPI): plain text on the profiling
routes ("Start profiling.\\n", "Stop profiling. This will take some time.\\n", refusals as
HTTP 500 with the message), GET and POST on both, {"detail": "Not Found"} elsewhere
(/end_profile included, as on many SGLang versions), OpenAI-shaped completions, and
/get_server_info with the server's arguments (tp_size, model_path: what nsys-agent's
client detects SGLang by). /gpuserver/stats is this server's own (per-rank counters).
"""
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import args as argsmod
from . import profiler, tokenizer
from .scheduler import Req, ShuttingDown

VERSION = "0.5.0-nsys-agent-gpuserver"
BODY_LIMIT = 1 << 20
REQUEST_TIMEOUT = 600.0
DEFAULT_MAX_TOKENS = 16  # OpenAI's default
# Routes whose calls are logged the way uvicorn logs them (the load generator's
# completions are not: thousands of lines).
LOGGED_ROUTES = ("/start_profile", "/stop_profile", "/end_profile")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, scheduler, args, rank_infos, log):
        self.scheduler = scheduler
        self.args = args
        self.rank_infos = rank_infos
        self.log = log
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    server_version = "gpuserver"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    # ---- plumbing ----

    def _send(self, status, body, ctype):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        path = self.path.split("?", 1)[0]
        if path in LOGGED_ROUTES:
            self.server.log('INFO:     %s:%d - "%s %s HTTP/1.1" %d' % (self.client_address[0], self.client_address[1],
                                                                      self.command, path, status))

    def _json(self, status, obj):
        self._send(status, json.dumps(obj), "application/json")

    def _text(self, status, text):
        self._send(status, text, "text/plain; charset=utf-8")

    def _body(self):
        if not self._raw.strip():
            return None
        try:
            return json.loads(self._raw)
        except ValueError as e:
            raise _Reply(422, {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": str(e)}]})

    def _read_raw(self):
        """Read the whole body first, whatever the route, so an unread body never spills
        into the next request on a kept-alive connection."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > BODY_LIMIT:
            self.close_connection = True
            return False
        self._raw = self.rfile.read(n) if n else b""
        return True

    def _route(self):
        path = self.path.split("?", 1)[0]
        if not self._read_raw():
            return self._json(413, {"detail": "request body missing a valid Content-Length, or larger than %d bytes"
                                              % BODY_LIMIT})
        routes = {
            "/health": (("GET", "HEAD"), self.health),
            "/health_generate": (("GET", "HEAD"), self.health),
            "/get_server_info": (("GET",), self.server_info),
            "/server_info": (("GET",), self.server_info),
            "/get_model_info": (("GET",), self.model_info),
            "/v1/models": (("GET",), self.models),
            "/v1/completions": (("POST",), self.completions),
            "/generate": (("POST",), self.generate),
            "/start_profile": (("GET", "POST"), self.start_profile),
            "/stop_profile": (("GET", "POST"), self.stop_profile),
            "/metrics": (("GET",), self.metrics),
            "/gpuserver/stats": (("GET",), self.stats),
        }
        if path not in routes:
            return self._json(404, {"detail": "Not Found"})
        methods, fn = routes[path]
        if self.command not in methods:
            return self._json(405, {"detail": "Method Not Allowed"})
        try:
            fn()
        except _Reply as r:
            if isinstance(r.body, str):
                self._text(r.status, r.body)
            else:
                self._json(r.status, r.body)
        except ShuttingDown:
            self._text(503, "The server is shutting down.\n")
        except Exception as e:  # a failing rank, or a bug: a bare 500 as FastAPI sends, reason in the log
            self.server.log("ERROR: %s %s: %s: %s" % (self.command, path, type(e).__name__, e))
            self._text(500, "Internal Server Error")

    do_GET = do_POST = do_HEAD = _route

    def do_PUT(self):
        if self._read_raw():
            self._json(405, {"detail": "Method Not Allowed"})
        else:
            self._json(413, {"detail": "request body too large"})

    do_DELETE = do_PATCH = do_PUT

    # ---- routes ----

    def health(self):
        self._send(200, b"", "text/plain; charset=utf-8")

    def server_info(self):
        s = self.server
        info = argsmod.server_info_args(s.args)
        info["port"] = s.server_address[1]
        st = s.scheduler.state()
        info["internal_states"] = [{"last_gen_throughput": st["last_gen_throughput"],
                                    "forward_ct": st["forward_ct"]}]
        info["max_total_num_tokens"] = s.scheduler.max_total_tokens
        info["version"] = VERSION
        info["nsys_agent_gpuserver"] = {"ranks": s.rank_infos, "slow_rank": s.args.slow_rank,
                                        "cuda_profiler_ranks": s.args.cuda_profiler_ranks,
                                        "profile_in_progress": st["profile_in_progress"],
                                        "profile_armed": st["profile_armed"],
                                        "last_profile_files": st["last_profile_files"]}
        self._json(200, info)

    def model_info(self):
        a = self.server.args
        self._json(200, {"model_path": a.model_path, "tokenizer_path": a.model_path, "is_generation": True})

    def models(self):
        a = self.server.args
        self._json(200, {"object": "list", "data": [{
            "id": a.served_model_name, "object": "model", "created": int(time.time()), "owned_by": "sglang",
            "root": a.model_path, "max_model_len": a.context_length}]})

    def start_profile(self):
        body = self._body()
        try:
            req = profiler.parse_request(body)
        except profiler.RequestError as e:
            raise _Reply(e.status, e.body)
        sch = self.server.scheduler
        status, text = sch.call(lambda: sch.profiler.handle_start(req, sch.forward_ct))
        self._text(status, text)

    def stop_profile(self):
        sch = self.server.scheduler
        status, text = sch.call(sch.profiler.handle_stop)
        self._text(status, text)

    def stats(self):
        sch = self.server.scheduler
        ranks = sch.call(sch.ranks.stats, timeout=REQUEST_TIMEOUT)
        self._json(200, {"scheduler": sch.state(), "ranks": ranks})

    def metrics(self):
        a = self.server.args
        if not a.enable_metrics:
            return self._json(404, {"detail": "Not Found"})
        st = self.server.scheduler.state()
        st["token_usage"] = self.server.scheduler.token_usage()
        self._send(200, metrics_text(a.served_model_name, st), "text/plain; version=0.0.4; charset=utf-8")

    # ---- generation ----

    def _openai_error(self, status, msg):
        raise _Reply(status, {"object": "error", "message": msg, "type": "BadRequestError", "param": None,
                              "code": status})

    def _run(self, reqs):
        sch = self.server.scheduler
        for r in reqs:
            sch.submit(r)
        deadline = time.monotonic() + REQUEST_TIMEOUT
        for r in reqs:
            if not r.done.wait(max(0.0, deadline - time.monotonic())):
                raise _Reply(504, {"detail": "generation did not finish in %.0f s" % REQUEST_TIMEOUT})
            if r.error:
                raise ShuttingDown()

    def _check_len(self, ids, max_new):
        limit = self.server.args.context_length
        if len(ids) + max_new > limit:
            self._openai_error(400, "prompt (%d tokens) + max_tokens (%d) is longer than the context length %d"
                               % (len(ids), max_new, limit))

    def completions(self):
        body = self._body()
        if not isinstance(body, dict):
            self._openai_error(400, "the body must be a JSON object")
        if body.get("stream"):
            self._openai_error(400, "this server does not stream; send stream: false")
        if body.get("n", 1) != 1:
            self._openai_error(400, "only n = 1 is supported")
        prompts = prompt_ids(body.get("prompt"), self.server.args.vocab_size)
        if prompts is None:
            self._openai_error(400, "prompt must be a non-empty string, a list of strings, or token ids")
        max_new = body.get("max_tokens", DEFAULT_MAX_TOKENS)
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
            self._openai_error(400, "max_tokens must be a positive integer")
        for ids in prompts:
            self._check_len(ids, max_new)
        ignore_eos = bool(body.get("ignore_eos", False))
        reqs = [Req(ids, max_new, ignore_eos=ignore_eos) for ids in prompts]
        self._run(reqs)
        choices = [{"index": i, "text": tokenizer.decode(r.out_ids), "logprobs": None,
                    "finish_reason": r.finish_reason, "matched_stop": None} for i, r in enumerate(reqs)]
        pt = sum(len(r.prompt_ids) for r in reqs)
        ct = sum(len(r.out_ids) for r in reqs)
        self._json(200, {"id": uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
                         "model": self.server.args.served_model_name, "choices": choices,
                         "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})

    def generate(self):
        """SGLang's native route: token ids in, ids out."""
        body = self._body()
        if not isinstance(body, dict):
            raise _Reply(400, {"error": {"message": "the body must be a JSON object"}})
        src = body.get("input_ids") if body.get("input_ids") is not None else body.get("text")
        prompts = prompt_ids(src, self.server.args.vocab_size)
        if prompts is None:
            raise _Reply(400, {"error": {"message": "give text or input_ids"}})
        sp = body.get("sampling_params") or {}
        max_new = sp.get("max_new_tokens", 128)
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
            raise _Reply(400, {"error": {"message": "sampling_params.max_new_tokens must be a positive integer"}})
        for ids in prompts:
            self._check_len(ids, max_new)
        reqs = [Req(ids, max_new, ignore_eos=bool(sp.get("ignore_eos", False))) for ids in prompts]
        self._run(reqs)
        out = [{"text": tokenizer.decode(r.out_ids), "output_ids": r.out_ids,
                "meta_info": {"id": str(r.rid), "prompt_tokens": len(r.prompt_ids),
                              "completion_tokens": len(r.out_ids),
                              "finish_reason": {"type": r.finish_reason, "length": len(r.out_ids)}}}
               for r in reqs]
        single = isinstance(src, str) or (isinstance(src, list) and src and isinstance(src[0], int))
        self._json(200, out[0] if single else out)


class _Reply(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


def prompt_ids(prompt, vocab):
    """A completion prompt as lists of ids: a string, a list of strings, a list of ids, or
    a list of lists of ids. None when it is none of these, empty, or ids are out of range."""
    def ids_ok(x):
        return (isinstance(x, list) and x and
                all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in x))
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt)] if prompt else None
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) and p for p in prompt):
            return [tokenizer.encode(p) for p in prompt]
        if ids_ok(prompt):
            return [list(prompt)]
        if all(ids_ok(p) for p in prompt):
            return [list(p) for p in prompt]
    return None


def metrics_text(model_name, st):
    """Prometheus text with SGLang's metric names and labels (the scheduler's gauges carry
    model_name, engine_type, tp_rank, pp_rank; the counters come from the tokenizer manager)."""
    labels = 'engine_type="unified",model_name="%s",pp_rank="0",tp_rank="0"' % _esc(model_name)
    tlabels = 'model_name="%s"' % _esc(model_name)
    rows = [
        ("sglang:gen_throughput", "gauge", "The generation throughput (token/s).", labels, st["last_gen_throughput"]),
        ("sglang:num_running_reqs", "gauge", "The number of running requests.", labels, st["num_running_reqs"]),
        ("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", labels,
         st["num_queue_reqs"]),
        ("sglang:token_usage", "gauge", "The token usage.", labels, round(st["token_usage"], 4)),
        ("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", tlabels,
         st["gen_tokens_total"]),
        ("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", tlabels,
         st["prompt_tokens_total"]),
        ("sglang:num_requests_total", "counter", "Number of requests processed.", tlabels, st["requests_total"]),
    ]
    out = []
    for name, kind, help_, lab, value in rows:
        out.append("# HELP %s %s" % (name, help_))
        out.append("# TYPE %s %s" % (name, kind))
        out.append("%s{%s} %s" % (name, lab, float(value)))
    return "\n".join(out) + "\n"


def _esc(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
