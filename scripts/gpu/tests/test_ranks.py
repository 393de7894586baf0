"""RankRuntime: what each rank does with a profile, on the fake engine."""
import gzip
import json
import os
import shutil
import tempfile
import unittest

from tests import util
from gpuserver.fakeengine import FakeEngine
from gpuserver.ranks import RankRuntime, cuda_profiler_calls


def spec(d, acts, prefix=""):
    return {"output_dir": d, "activities": acts, "with_stack": None, "record_shapes": None,
            "profile_id": "1700000000.5", "prefix": prefix}


class Broken(FakeEngine):
    def trace_stop(self, path):
        raise RuntimeError("Kineto said no")

    def mem_start(self):
        raise RuntimeError("no memory history here")


class Runtime(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()
        self.lines = []
        self.args = util.fake_args("--tp", "2")

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def rt(self, rank=1, engine=FakeEngine):
        return RankRuntime(rank, self.args, engine(rank, self.args, self.lines.append), self.lines.append)

    def test_files_under_sglang_names(self):
        rt = self.rt()
        s = spec(os.path.join(self.d, "out"), ["CPU", "GPU", "MEM"], prefix="x")
        rt.profile_start(s, None)
        rt.handle("decode", {"slots": [0], "ids": [5], "positions": [3]})
        files = rt.profile_stop(s, None)
        names = sorted(os.path.basename(f) for f in files)
        self.assertEqual(names[1], "x-1700000000.5-TP-1.trace.json.gz")
        self.assertRegex(names[0], r"^[0-9.]+-TP-1-memory\.pickle$")
        with gzip.open(files[0] if files[0].endswith(".gz") else files[1], "rt") as f:
            self.assertEqual(len(json.load(f)["traceEvents"]), 1)  # the one decode step
        self.assertIn("Profiling done. Traces are saved to: %s" % s["output_dir"], self.lines)

    def test_stage_suffix(self):
        rt = self.rt()
        s = spec(self.d, ["CPU"])
        rt.profile_start(s, "EXTEND")
        self.assertEqual(os.path.basename(rt.profile_stop(s, "EXTEND")[0]), "1700000000.5-TP-1-EXTEND.trace.json.gz")

    def test_a_failing_recorder_does_not_end_the_rank(self):
        rt = self.rt(engine=Broken)
        s = spec(self.d, ["CPU", "GPU", "MEM"])
        rt.profile_start(s, None)
        self.assertEqual(rt.profile_stop(s, None), [])
        errors = [l for l in self.lines if l.startswith("ERROR:")]
        self.assertEqual(len(errors), 2, self.lines)
        self.assertIn("could not record the CUDA memory history", errors[0])
        self.assertIn("could not write the trace", errors[1])
        rt.profile_start(s, None)  # the next window starts again
        self.assertIsNotNone(rt.tracing)

    def test_cuda_profiler_ranks(self):
        self.assertTrue(cuda_profiler_calls(util.fake_args(), 0))
        self.assertFalse(cuda_profiler_calls(util.fake_args(), 1))
        self.assertTrue(cuda_profiler_calls(util.fake_args("--cuda-profiler-ranks", "all"), 1))
        rt = self.rt()
        s = spec(self.d, ["CUDA_PROFILER"])
        rt.profile_start(s, None)
        self.assertEqual(rt.profile_stop(s, None), [])  # no file: nsys writes that capture
        self.assertEqual(rt.stats()["cuda_profiler_ranges"], 1)

    def test_unknown_op(self):
        with self.assertRaises(ValueError):
            self.rt().handle("format_disk", {})


if __name__ == "__main__":
    unittest.main()
