"""Shared test helpers: the real server code on the fake (CPU) engine, in-process or as a
process."""
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time

GPU_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if GPU_DIR not in sys.path:
    sys.path.insert(0, GPU_DIR)

from gpuserver import args as argsmod  # noqa: E402
from gpuserver.http_api import Server  # noqa: E402
from gpuserver.ranks import RankGroup  # noqa: E402
from gpuserver.scheduler import Scheduler  # noqa: E402

SERVER = os.path.join(GPU_DIR, "server.py")


def fake_args(*extra):
    return argsmod.parse(["--engine", "fake", "--port", "0"] + list(extra))


class InProcessServer:
    """Ranks (spawned followers when --tp > 1), scheduler thread and HTTP on a free port."""

    def __init__(self, *extra):
        self.args = fake_args(*extra)
        self.lines = collections.deque(maxlen=10000)
        self.lines_lock = threading.Lock()

        def log(msg):
            with self.lines_lock:
                self.lines.append(msg)
        self.log = log
        self.ranks = RankGroup(self.args, log)
        infos = self.ranks.start()
        self.sched = Scheduler(self.args, self.ranks, log)
        self.httpd = Server(("127.0.0.1", 0), self.sched, self.args, infos, log)
        self.base = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.t_http = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t_http.start()
        self.error = None
        self.t_sched = threading.Thread(target=self._run, daemon=True)
        self.t_sched.start()

    def _run(self):
        try:
            self.sched.run()
        except BaseException as e:  # surfaced by close()
            self.error = e

    def text(self):
        with self.lines_lock:
            return "\n".join(self.lines)

    def close(self):
        self.sched.stop()
        self.t_sched.join(10)
        self.httpd.shutdown()
        self.httpd.server_close()
        self.ranks.close()
        if self.error:
            raise self.error


def start_process(*extra, env=None):
    """server.py --engine fake as a process on a free port; returns (Popen, base URL,
    output file path)."""
    d = tempfile.mkdtemp(prefix="gpuserver-test-")
    port_file = os.path.join(d, "port")
    out = open(os.path.join(d, "out.log"), "w")
    p = subprocess.Popen([sys.executable, SERVER, "--engine", "fake", "--port", "0", "--port-file", port_file]
                         + list(extra), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(port_file):
        if p.poll() is not None or time.monotonic() > deadline:
            out.close()
            raise RuntimeError("server did not come up: %s" % open(out.name).read())
        time.sleep(0.05)
    out.close()
    return p, "http://127.0.0.1:%s" % open(port_file).read().strip(), out.name


def wait_for(pred, timeout=30.0, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()
