"""The scheduler over the real rank code on the fake engine (one in-process rank)."""
import threading
import unittest

from tests import util
from gpuserver.ranks import RankGroup
from gpuserver.scheduler import Req, Scheduler


class Setup(unittest.TestCase):
    def setUp(self):
        self.lines = []
        self.args = util.fake_args("--max-running-requests", "4", "--decode-log-interval", "5")
        self.ranks = RankGroup(self.args, self.lines.append)
        self.ranks.start()
        self.sched = Scheduler(self.args, self.ranks, self.lines.append)

    def tearDown(self):
        self.ranks.close()

    def run_until(self, reqs, limit=10000):
        for r in reqs:
            self.sched.submit(r)
        self.sched._drain(block=False)
        n = 0
        while not all(r.done.is_set() for r in reqs) and n < limit:
            self.sched.step()
            self.sched._drain(block=False)
            n += 1
        return n


class Batching(Setup):
    def test_tokens_and_steps(self):
        reqs = [Req([1, 2, 3], 5, ignore_eos=True), Req([1, 9], 3, ignore_eos=True)]
        steps = self.run_until(reqs)
        self.assertEqual([len(r.out_ids) for r in reqs], [5, 3])
        self.assertEqual([r.finish_reason for r in reqs], ["length", "length"])
        self.assertEqual(steps, 5)  # one prefill (both) + 4 decodes for the longer one
        self.assertEqual(self.sched.forward_ct, 5)
        self.assertEqual(self.sched.gen_tokens_total, 8)
        self.assertEqual(sorted(self.sched.free_slots), [0, 1, 2, 3])

    def test_more_requests_than_slots_wait(self):
        reqs = [Req([1, i + 3], 4, ignore_eos=True) for i in range(7)]
        self.run_until(reqs)
        self.assertTrue(all(len(r.out_ids) == 4 for r in reqs))
        prefills = [l for l in self.lines if l.startswith("Prefill batch")]
        self.assertEqual(prefills[0], "Prefill batch, #new-seq: 4, #new-token: 8, #cached-token: 0, token usage: "
                                      "0.01, #running-req: 0, #queue-req: 3,")

    def test_decode_log_line(self):
        self.run_until([Req([1, 2], 12, ignore_eos=True)])
        dec = [l for l in self.lines if l.startswith("Decode batch")]
        self.assertEqual(len(dec), 2)  # 11 decode steps, a line every 5; prompt 2 + 6 tokens at the first
        self.assertRegex(dec[0], r"^Decode batch, #running-req: 1, #token: 8, token usage: 0\.00, cuda graph: "
                                 r"False, gen throughput \(token/s\): [0-9.]+, #queue-req: 0,$")
        self.assertGreater(self.sched.last_gen_throughput, 0)

    def test_eos_stops_unless_ignored(self):
        eos = (1 * 7 + 1) % self.args.vocab_size  # the fake engine's prefill token for prompt [1]
        stops = Req([1], 50, eos_id=eos)
        ignores = Req([1], 50, ignore_eos=True, eos_id=eos)
        self.run_until([stops, ignores])
        self.assertEqual((stops.finish_reason, len(stops.out_ids)), ("stop", 1))
        self.assertEqual((ignores.finish_reason, len(ignores.out_ids)), ("length", 50))

    def test_context_length_bounds_a_request(self):
        r = Req([1] * (self.args.context_length - 2), 100, ignore_eos=True)
        self.run_until([r])
        self.assertEqual(r.seq_len(), self.args.context_length)

    def test_background_requests_keep_steps_going(self):
        self.args.background_requests = 2
        self.sched._top_up_background()
        self.sched._drain(block=False)
        for _ in range(30):
            self.sched._top_up_background()
            self.sched.step()
        self.assertEqual(self.sched.forward_ct, 30)
        self.assertEqual(len(self.sched.running), 2)

    def test_step_overhead_paces_batches(self):
        import time
        self.args.step_overhead_ms = 20
        t0 = time.monotonic()
        steps = self.run_until([Req([1, 2], 4, ignore_eos=True)])
        self.assertEqual(steps, 4)
        self.assertGreaterEqual(time.monotonic() - t0, 4 * 0.020)

    def test_stop_fails_waiting_requests(self):
        r = Req([1, 2], 5)
        self.sched.submit(r)
        t = threading.Thread(target=self.sched.run)
        self.sched.stop()
        t.start()
        t.join(5)
        self.assertTrue(r.done.is_set())
        self.assertEqual(r.error, "The server is shutting down.")

    def test_profile_commands_land_between_batches(self):
        from gpuserver.profiler import parse_request
        q = parse_request({"num_steps": 3, "output_dir": "/tmp/nonexistent-never-written"}, env={})
        q["activities"] = ["CUDA_PROFILER"]  # nothing written to disk
        res = []
        t = threading.Thread(target=lambda: res.append(self.sched.call(
            lambda: self.sched.profiler.handle_start(q, self.sched.forward_ct), timeout=10)))
        t.start()
        reqs = [Req([1, 2], 10, ignore_eos=True)]
        self.run_until(reqs)
        t.join(5)
        self.assertEqual(res, [(200, "Start profiling.\n")])
        self.assertFalse(self.sched.profiler.in_progress)
        self.assertEqual(self.ranks.stats()[0]["cuda_profiler_ranges"], 1)


if __name__ == "__main__":
    unittest.main()
