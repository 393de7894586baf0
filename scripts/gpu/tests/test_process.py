"""server.py and loadgen.py as processes: what a GPU run does, on the fake engine."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from tests import util
from gpuserver.client import request

LOADGEN = os.path.join(util.GPU_DIR, "loadgen.py")


def read(path):
    with open(path) as f:
        return f.read()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class SelfCheck(unittest.TestCase):
    def test_self_check_passes_with_two_ranks(self):
        d = tempfile.mkdtemp(prefix="selfcheck-")
        r = subprocess.run([sys.executable, util.SERVER, "--engine", "fake", "--self-check", "--tp", "2",
                            "--slow-rank", "0", "--self-check-dir", d], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])
        self.assertRegex(r.stdout, r"SELF-CHECK: \d+ passed, 0 failed")
        self.assertNotIn("SELF-CHECK FAIL", r.stdout)
        # It really wrote per-rank traces under SGLang's names.
        self.assertEqual(len([n for n in os.listdir(os.path.join(d, "manual")) if n.endswith(".trace.json.gz")]), 2)

    def test_self_check_fails_loudly(self):
        # No "Decode batch" line can appear with this interval: that check fails, the
        # summary names it, the exit code is 1.
        r = subprocess.run([sys.executable, util.SERVER, "--engine", "fake", "--self-check",
                            "--decode-log-interval", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout[-3000:])
        self.assertIn("SELF-CHECK FAIL log: Decode batch, #running-req:", r.stdout)
        self.assertRegex(r.stdout, r"SELF-CHECK: \d+ passed, 1 failed in [0-9.]+ s \(log: Decode batch")

    def test_optional_checks_left_out(self):
        # Background requests keep the server busy, so the by-stage check (it needs an idle
        # server) is left out; a slow rank without work makes no claim.
        r = subprocess.run([sys.executable, util.SERVER, "--engine", "fake", "--self-check", "--slow-rank", "0",
                            "--slow-rank-work", "0", "--background-requests", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])
        self.assertNotIn("by stage", r.stdout)
        self.assertNotIn("slow rank works more", r.stdout)

    def test_bad_flags_exit_2(self):
        r = subprocess.run([sys.executable, util.SERVER, "--engine", "fake", "--tp", "2", "--slow-rank", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--slow-rank 5", r.stdout)


class Signals(unittest.TestCase):
    def test_sigterm_to_the_group_ends_every_rank(self):
        # The agent stops a target by signalling its process group: rank 0 must bring the
        # followers down in order and exit 0 (nsys writes range reports at exit).
        p, base, out = util.start_process("--tp", "3", "--num-attention-heads", "12", "--num-key-value-heads", "3",
                                          "--hidden-size", "1536", "--intermediate-size", "4608")
        pids = [r["pid"] for r in request(base + "/get_server_info").json()["nsys_agent_gpuserver"]["ranks"]]
        self.assertEqual(len(pids), 3)
        os.killpg(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(30), 0, read(out))
        self.assertTrue(util.wait_for(lambda: not any(alive(x) for x in pids[1:]), 10), pids)
        self.assertIn("server exited (code 0)", read(out))

    def test_follower_death_ends_the_server(self):
        p, base, out = util.start_process("--tp", "2")
        try:
            pid1 = request(base + "/get_server_info").json()["nsys_agent_gpuserver"]["ranks"][1]["pid"]
            os.kill(pid1, signal.SIGKILL)
            self.assertEqual(p.wait(30), 1)
            self.assertIn("FATAL: rank 1", read(out))
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)

    def test_rank0_death_ends_followers(self):
        p, base, out = util.start_process("--tp", "2")
        pid1 = request(base + "/get_server_info").json()["nsys_agent_gpuserver"]["ranks"][1]["pid"]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        self.assertTrue(util.wait_for(lambda: not alive(pid1), 15), "follower %d outlived rank 0" % pid1)


class LoadGen(unittest.TestCase):
    def test_duration_run_with_server_count(self):
        p, base, out = util.start_process("--tp", "2", "--enable-metrics")
        try:
            summary = os.path.join(tempfile.mkdtemp(), "s.json")
            r = subprocess.run([sys.executable, LOADGEN, "--url", base, "-c", "3", "--max-tokens", "8",
                                "--duration", "1.5", "--interval", "0.5", "--out", summary],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertRegex(r.stdout, r"loadgen t=0\.[0-9]s tokens/s=[0-9.]+ requests=\d+ errors=0")
            s = json.load(open(summary))
            self.assertEqual(s["errors"], 0)
            self.assertGreater(s["requests"], 0)
            self.assertEqual(s["completion_tokens"], 8 * s["requests"])
            # The server counts tokens made inside the run, also of requests still running at
            # its end; the client counts whole requests, some begun before the first count.
            self.assertGreaterEqual(s["server_generated_tokens"], s["completion_tokens"] - 3 * 8)
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)

    def test_sigint_stops_it(self):
        p, base, out = util.start_process()
        try:
            lg = subprocess.Popen([sys.executable, LOADGEN, "--url", base, "--interval", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1.0)
            lg.send_signal(signal.SIGINT)
            text = lg.communicate(timeout=30)[0]
            self.assertEqual(lg.returncode, 0, text)
            self.assertIn("loadgen summary", text)
            self.assertNotIn("server_generated_tokens", text)  # no --enable-metrics: no server count
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)

    def test_no_server(self):
        r = subprocess.run([sys.executable, LOADGEN, "--url", "http://127.0.0.1:9", "--wait", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("did not answer 200", r.stdout)


if __name__ == "__main__":
    unittest.main()
