"""SGLang's profiling state machine, batch by batch."""
import json
import random
import unittest

from tests import util  # noqa: F401
from gpuserver import profiler
from gpuserver.profiler import Profiler, RequestError, parse_request


class Recorder:
    """Stands for every rank: records what the state machine asked for."""

    def __init__(self):
        self.events = []

    def profile_start(self, spec, stage):
        self.events.append(("start", stage))

    def profile_stop(self, spec, stage):
        self.events.append(("stop", stage))
        return ["%s-%s" % (spec["profile_id"], stage)]


def req(**kw):
    return parse_request(kw, env={})


class Run:
    """Drives a Profiler through batches like the scheduler does."""

    def __init__(self, ct=0):
        self.rec = Recorder()
        self.p = Profiler(self.rec, new_id=lambda: "1.0")
        self.ct = ct
        self.recorded = []  # batches that ran while a profile was in progress

    def batch(self, prefill=False):
        self.ct += 1
        self.p.before_batch(self.ct, prefill)
        if self.p.in_progress:
            self.recorded.append(self.ct)

    def batches(self, n, prefill=False):
        for _ in range(n):
            self.batch(prefill)


class StateMachine(unittest.TestCase):
    def test_num_steps_started_at_once_records_n_minus_1(self):
        r = Run(ct=100)
        self.assertEqual(r.p.handle_start(req(num_steps=5), r.ct), (200, "Start profiling.\n"))
        self.assertEqual(r.rec.events, [("start", None)])  # between batches, at once
        r.batches(10)
        self.assertEqual(r.recorded, [101, 102, 103, 104])  # SGLang stops before batch ct0+N
        self.assertEqual(r.rec.events, [("start", None), ("stop", None)])
        self.assertEqual(r.p.handle_stop()[0], 500)

    def test_start_step_records_n(self):
        r = Run(ct=10)
        self.assertEqual(r.p.handle_start(req(start_step=15, num_steps=3), r.ct)[0], 200)
        self.assertEqual(r.rec.events, [])
        self.assertEqual(r.p.handle_stop(), (500, "Profiling is not in progress. Call /start_profile first."))
        r.batches(20)
        self.assertEqual(r.recorded, [15, 16, 17])
        self.assertEqual(r.rec.events, [("start", None), ("stop", None)])

    def test_start_step_in_the_past_starts_next_batch(self):
        r = Run(ct=50)
        r.p.handle_start(req(start_step=3, num_steps=2), r.ct)
        r.batches(5)
        self.assertEqual(r.recorded, [51, 52])

    def test_pending_start_is_replaced(self):
        r = Run(ct=0)
        r.p.handle_start(req(start_step=100), r.ct)
        self.assertEqual(r.p.handle_start(req(start_step=5, num_steps=1), r.ct)[0], 200)
        r.batches(10)
        self.assertEqual(r.recorded, [5])

    def test_busy_and_manual_stop(self):
        r = Run()
        r.p.handle_start(req(), r.ct)
        self.assertEqual(r.p.handle_start(req(), r.ct),
                         (500, "Profiling is already in progress. Call /stop_profile first."))
        r.batches(3)
        self.assertEqual(r.p.handle_stop(), (200, "Stop profiling. This will take some time.\n"))
        self.assertEqual(r.p.last_files, ["1.0-None"])
        self.assertEqual(r.recorded, [1, 2, 3])

    def test_by_stage_from_idle(self):
        r = Run()
        r.p.handle_start(req(num_steps=2, profile_by_stage=True), r.ct)
        self.assertEqual(r.rec.events, [])
        r.batch(prefill=True)
        r.batches(5)
        self.assertEqual(r.rec.events, [("start", "EXTEND"), ("stop", "EXTEND"), ("start", "DECODE"),
                                        ("stop", "DECODE")])
        self.assertEqual(r.recorded, [1, 2, 3])  # the prefill, then two decodes

    def test_by_stage_prefill_count(self):
        r = Run()
        r.p.handle_start(req(num_steps=2, profile_by_stage=True), r.ct)
        r.batches(3, prefill=True)
        self.assertEqual(r.rec.events, [("start", "EXTEND"), ("stop", "EXTEND")])
        self.assertEqual(r.recorded, [1, 2])

    def test_activities_that_start_nothing(self):
        r = Run()
        self.assertEqual(r.p.handle_start(req(activities=["FOO"]), r.ct)[0], 200)
        self.assertFalse(r.p.in_progress)
        self.assertEqual(r.p.handle_stop()[0], 500)
        for acts in (["CUDA_PROFILER"], ["MEM"], ["CPU"], ["GPU"]):
            r = Run()
            r.p.handle_start(req(activities=acts), r.ct)
            self.assertTrue(r.p.in_progress, acts)

    def test_profile_id_from_request(self):
        r = Run()
        r.p.handle_start(req(profile_id="abc.1"), r.ct)
        self.assertEqual(r.p.spec["profile_id"], "abc.1")


class ParseRequest(unittest.TestCase):
    def test_defaults(self):
        q = parse_request(None, env={"SGLANG_TORCH_PROFILER_DIR": "/srv/prof"})
        self.assertEqual(q["activities"], ["CPU", "GPU"])
        self.assertEqual(q["output_dir"], "/srv/prof")
        self.assertEqual(parse_request({}, env={})["output_dir"], "/tmp")

    def test_refusals(self):
        cases = [
            ({"num_steps": "5"}, 422), ({"num_steps": True}, 422), ({"num_steps": -1}, 400),
            ({"activities": "CPU"}, 422), ({"activities": [1]}, 422), ({"with_stack": "yes"}, 422),
            ({"profile_prefix": "../x"}, 500), ({"profile_id": "a-b"}, 500), ({"merge_profiles": True}, 500),
            ({"profile_stages": ["prefill"]}, 500), ({"activities": ["RPD"]}, 500),
            ({"profile_by_stage": True}, 500), ([1, 2], 422),
        ]
        for body, status in cases:
            with self.subTest(body=body):
                with self.assertRaises(RequestError) as cm:
                    parse_request(body, env={})
                self.assertEqual(cm.exception.status, status)

    def test_fuzz_never_crashes(self):
        # Outside input: any JSON value is either a request or a RequestError.
        rnd = random.Random(12)
        atoms = [None, True, False, 0, -1, 7, 2 ** 70, 1.5, "", "x", "../..", "CPU", "a-b", [], {}, ["CPU", "GPU"],
                 [1, "x"], {"a": 1}]
        keys = ["output_dir", "start_step", "num_steps", "activities", "with_stack", "record_shapes",
                "profile_by_stage", "merge_profiles", "profile_prefix", "profile_id", "profile_stages", "junk"]
        for _ in range(3000):
            body = {rnd.choice(keys): rnd.choice(atoms) for _ in range(rnd.randint(0, 6))}
            json.dumps(body)
            try:
                q = parse_request(body, env={})
            except RequestError as e:
                self.assertIn(e.status, (400, 422, 500))
                continue
            self.assertIsInstance(q["activities"], list)
            self.assertIsInstance(q["output_dir"], str)
            p = Profiler(Recorder(), new_id=lambda: "1.0")
            p.handle_start(q, 10)
            for ct in range(11, 20):
                p.before_batch(ct, ct % 3 == 0)

    def test_starts_anything(self):
        self.assertFalse(profiler.starts_anything(["RPD", "FOO"]))
        self.assertTrue(profiler.starts_anything(["FOO", "MEM"]))


if __name__ == "__main__":
    unittest.main()
