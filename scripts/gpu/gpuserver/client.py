"""A small HTTP client for SGLang-compatible servers (standard library only) and a load
loop: N workers sending completions back to back, counting tokens. Used by the
self-check, scripts/gpu/loadgen.py and scripts/gpu/throughput.py."""
import json
import re
import threading
import time
import urllib.error
import urllib.request


class Reply:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def request(url, method="GET", obj=None, timeout=30.0):
    """One request; an HTTP error status is a Reply, not an exception. Transport errors
    (refused, timeout) raise OSError."""
    data = None if obj is None else json.dumps(obj).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, r.read(), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), dict(e.headers or {}))


def wait_healthy(base, timeout=300.0, proc=None):
    """Poll GET /health until 200. proc (a Popen), when given, must stay alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server exited with code %s before it answered /health" % proc.returncode)
        try:
            if request(base + "/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("%s/health did not answer 200 within %.0f s" % (base, timeout))


_METRIC = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)\s*$')


def parse_metrics(text):
    """Prometheus text to {name: summed value over label sets}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out


def generated_tokens(base, timeout=10.0):
    """The server's sglang:generation_tokens_total (needs --enable-metrics)."""
    r = request(base + "/metrics", timeout=timeout)
    if r.status != 200:
        raise RuntimeError("GET %s/metrics: HTTP %d: start the server with --enable-metrics" % (base, r.status))
    m = parse_metrics(r.text)
    if "sglang:generation_tokens_total" not in m:
        raise RuntimeError("GET %s/metrics has no sglang:generation_tokens_total" % base)
    return m["sglang:generation_tokens_total"]


class Load:
    """concurrency workers sending /v1/completions (ignore_eos, max_tokens each) until
    stop(). Counts completed requests, completion tokens and errors; thread-safe reads."""

    def __init__(self, base, concurrency=4, max_tokens=64, prompt="Profile me, please. " * 2, timeout=120.0):
        self.base = base
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.prompt = prompt
        self.timeout = timeout
        self.lock = threading.Lock()
        self.requests = 0
        self.tokens = 0
        self.errors = 0
        self.last_error = None
        self.latencies = []
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, name="load-%d" % i, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _worker(self):
        body = {"model": "default", "prompt": self.prompt, "max_tokens": self.max_tokens, "ignore_eos": True,
                "temperature": 0}
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r = request(self.base + "/v1/completions", "POST", body, timeout=self.timeout)
                ok = r.status == 200
                n = r.json()["usage"]["completion_tokens"] if ok else 0
                err = None if ok else "HTTP %d: %s" % (r.status, r.text[:200])
            except (OSError, ValueError, KeyError) as e:
                ok, n, err = False, 0, "%s: %s" % (type(e).__name__, e)
            with self.lock:
                if ok:
                    self.requests += 1
                    self.tokens += n
                    self.latencies.append(time.monotonic() - t0)
                else:
                    self.errors += 1
                    self.last_error = err
            if not ok:
                self._stop.wait(0.2)  # a down server is not hammered

    def snapshot(self):
        with self.lock:
            return {"requests": self.requests, "tokens": self.tokens, "errors": self.errors,
                    "last_error": self.last_error}

    def stop(self, join_timeout=None):
        self._stop.set()
        for t in self._threads:
            t.join(join_timeout if join_timeout is not None else self.timeout)
        return self.snapshot()


def percentile(values, q):
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[i]
