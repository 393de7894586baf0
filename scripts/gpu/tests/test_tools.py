"""checkreport.py and throughput.py's table: pure functions, real input shapes."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

from tests import util

sys.path.insert(0, util.GPU_DIR)
import checkreport  # noqa: E402
import throughput  # noqa: E402
import winfile  # noqa: E402

INFO = {"nsys_agent_gpuserver": {"ranks": [{"tp_rank": 0, "pid": 501}, {"tp_rank": 1, "pid": 502}]}}


def rank(label, pid=0, kernels=10, comm_ns=0, compute_ns=1000):
    return {"label": label, "pid": pid, "kernels": kernels, "comm_ns": comm_ns, "compute_ns": compute_ns}


class CheckReport(unittest.TestCase):
    def test_nsys_capture(self):
        s = {"ranks": [rank("pid 501", 501, comm_ns=5), rank("pid 502", 502, comm_ns=7, compute_ns=2000),
                       rank("pid 900", 900, kernels=0)], "slowest_rank": "pid 502", "imbalance": 2.0}
        res = checkreport.check(s, checkreport.rank_map(INFO), 2, expect_comm=True, expect_slow=1)
        self.assertTrue(all(ok for ok, _ in res), res)
        self.assertEqual(len(res), 1 + 2 * 2 + 1)

    def test_kineto_labels(self):
        s = {"ranks": [rank("TP00"), rank("TP01")], "slowest_rank": "TP00"}
        res = checkreport.check(s, checkreport.rank_map(INFO), 2, expect_slow=1)
        self.assertEqual([ok for ok, _ in res], [True, True, True, False])
        self.assertIn("slowest rank 'TP00' = rank 0, want rank 1", res[-1][1])

    def test_missing_rank_and_no_comm(self):
        s = {"ranks": [rank("pid 501", 501)]}
        res = checkreport.check(s, checkreport.rank_map(INFO), 2, expect_comm=True)
        fails = [line for ok, line in res if not ok]
        self.assertEqual(len(fails), 2, res)
        self.assertIn("rank 0 (pid 501): 0.000 ms in communication", fails[0])
        self.assertIn("rank 1 (pid 502) is not in the capture", fails[1])

    def test_verdict(self):
        s = {"ranks": [rank("TP00"), rank("TP01")],
             "verdict": {"level": "broken", "findings": [{"id": "rank-missing", "level": "broken",
                                                          "message": "rank TP01 wrote no trace"}]}}
        res = checkreport.check(s, checkreport.rank_map(INFO), 2)
        self.assertEqual(res[0], (False, "CHECK FAIL window: analyze verdict broken (broken rank-missing: rank "
                                         "TP01 wrote no trace)"))
        s["verdict"] = {"level": "warning", "findings": []}
        self.assertTrue(checkreport.check(s, checkreport.rank_map(INFO), 2)[0][0])

    def test_pids_arg(self):
        self.assertEqual(checkreport.pids_arg(INFO), "501,502")

    def test_cli(self):
        d = tempfile.mkdtemp()
        a, i = os.path.join(d, "a.json"), os.path.join(d, "i.json")
        json.dump({"ranks": [rank("TP00"), rank("TP01")]}, open(a, "w"))
        json.dump(INFO, open(i, "w"))
        cmd = [sys.executable, os.path.join(util.GPU_DIR, "checkreport.py"), "--analyze", a, "--server-info", i,
               "--expect-ranks", "2", "--name", "t1"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("CHECK PASS t1: rank 1 (TP01): 10 kernels", r.stdout)
        r = subprocess.run(cmd[:3] + [os.path.join(d, "missing.json")] + cmd[4:], stdout=subprocess.PIPE, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read the inputs", r.stdout)
        r = subprocess.run([sys.executable, os.path.join(util.GPU_DIR, "checkreport.py"), "--server-info", i,
                            "--print-pids"], stdout=subprocess.PIPE, text=True)
        self.assertEqual((r.returncode, r.stdout), (0, "501,502\n"))


class WinFile(unittest.TestCase):
    def setUp(self):
        self.data = tempfile.mkdtemp()
        for wid, name, created, state, arts in [
                ("w1", "steps20", "2026-12-01T10:00:00Z", "failed", []),
                ("w2", "steps20", "2026-12-01T11:00:00Z", "ready",
                 [{"name": "steps20.sqlite", "kind": "sqlite"}, {"name": "server/1.0-TP-0.trace.json.gz", "kind": "trace"},
                  {"name": "../../escape.sqlite", "kind": "sqlite"}]),
                ("w3", "other", "2026-12-01T12:00:00Z", "ready", [])]:
            os.makedirs(os.path.join(self.data, "windows", wid))
            json.dump({"id": wid, "name": name, "created_at": created, "state": state, "artifacts": arts,
                       "error": "boom" if state == "failed" else "", "summary": {"slowest_rank": "pid 1"}},
                      open(os.path.join(self.data, "windows", wid, "manifest.json"), "w"))
        os.makedirs(os.path.join(self.data, "windows", "broken"))
        open(os.path.join(self.data, "windows", "broken", "manifest.json"), "w").write("{not json")

    def run_it(self, *args):
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = winfile.main([self.data] + list(args))
        return rc, buf.getvalue().split("\n")[:-1]

    def test_newest_window_of_a_name(self):
        self.assertEqual(self.run_it("steps20", "state"), (0, ["ready"]))
        rc, lines = self.run_it("steps20", "dir")
        self.assertTrue(lines[0].endswith("/windows/w2"))

    def test_artifacts_stay_inside(self):
        rc, lines = self.run_it("steps20", "sqlite")
        self.assertEqual([os.path.basename(p) for p in lines], ["steps20.sqlite"])  # ../../escape.sqlite dropped
        rc, lines = self.run_it("steps20", "trace")
        self.assertTrue(lines[0].endswith("/w2/server/1.0-TP-0.trace.json.gz"))

    def test_summary_and_missing(self):
        self.assertEqual(self.run_it("other", "summary-json"), (0, ['{"slowest_rank": "pid 1"}']))
        self.assertEqual(self.run_it("nope", "state")[0], 1)


class Throughput(unittest.TestCase):
    def test_table(self):
        rows = throughput.table({"bare": [100.0, 110.0, 90.0], "armed-idle": [99.0, 98.0, 97.0],
                                 "capturing": [50.0], "after-window": []})
        self.assertEqual(rows[0], ("bare", 100.0, 90.0, 110.0, 100.0, 3))
        self.assertEqual(rows[1], ("armed-idle", 98.0, 97.0, 99.0, 98.0, 3))
        self.assertEqual(rows[2][0], "capturing")
        self.assertEqual(len(rows), 3)
        text = throughput.format_table(rows)
        self.assertIn("armed-idle", text)
        self.assertIn("98.0%", text)
        self.assertIn("97.0-99.0", text)

    def test_commands(self):
        a = throughput.parse(["--arm", "cuda-profiler", "--backend", "cuda-profiler", "--agent", "/x/nsys-agent",
                              "--", "--tp", "2"])
        self.assertEqual(a.server_args, ["--tp", "2"])
        cmd = throughput.agent_cmd(a, "/d", "/d/ready", "s1")
        self.assertEqual(cmd[:3], ["/x/nsys-agent", "run", "--arm"])
        self.assertIn("--server-url", cmd)
        sep = cmd.index("--")
        self.assertEqual(cmd[sep + 1:][-3:], ["--tp", "2", "--enable-metrics"])
        a = throughput.parse(["--", "--enable-metrics"])
        self.assertEqual(throughput.server_cmd(a).count("--enable-metrics"), 1)
        self.assertNotIn("--server-url", throughput.agent_cmd(a, "/d", "/r", "s"))
        a = throughput.parse(["--nsys-arg=--cuda-graph-trace=graph", "--nsys-arg=--sample=none"])
        cmd = throughput.agent_cmd(a, "/d", "/r", "s")
        sep = cmd.index("--")
        self.assertEqual([c for c in cmd[:sep] if c.startswith("--nsys-arg")],
                         ["--nsys-arg=--cuda-graph-trace=graph", "--nsys-arg=--sample=none"])


if __name__ == "__main__":
    unittest.main()
