import ast
import os
import unittest

from tests import util  # noqa: F401  (sys.path)
from gpuserver import naming, tokenizer

SEEDS = "/work/shared/seeds"


class TraceNames(unittest.TestCase):
    def test_names(self):
        cases = [
            (("1763900000.123456", 0), {}, "1763900000.123456-TP-0.trace.json.gz"),
            (("1763900000.123456", 1), {"prefix": "exp"}, "exp-1763900000.123456-TP-1.trace.json.gz"),
            (("1.5", 3), {"stage": "DECODE"}, "1.5-TP-3-DECODE.trace.json.gz"),
            (("1.5", 0), {"dp": 1, "pp": 0, "ep": 2, "stage": "EXTEND", "prefix": "p"},
             "p-1.5-TP-0-DP-1-PP-0-EP-2-EXTEND.trace.json.gz"),
        ]
        for args, kw, want in cases:
            with self.subTest(want=want):
                self.assertEqual(naming.trace_file_name(*args, **kw), want)

    def test_fixture_names_match(self):
        # The committed real Kineto fixture is named the way SGLang names per-rank traces.
        d = "/work/shared/fixtures/kineto-h100-2rank"
        if not os.path.isdir(d):
            self.skipTest("shared fixtures not here")
        got = sorted(n for n in os.listdir(d) if n.endswith(".gz"))
        self.assertEqual(got, [naming.trace_file_name("1763900000.123456", r) for r in (0, 1)])

    def test_memory_name(self):
        self.assertEqual(naming.memory_file_name(2, "DECODE", now=12.5), "12.5-TP-2-memory-DECODE.pickle")
        self.assertEqual(naming.memory_file_name(0, now=3.0), "3.0-TP-0-memory.pickle")

    def test_profile_id_is_time(self):
        pid = naming.new_profile_id()
        self.assertRegex(pid, r"^[0-9]+\.[0-9]+$")
        self.assertNotIn("-", pid)  # SGLang's names are split on '-'

    def test_valid_prefix(self):
        for p, ok in [("exp_1", True), ("", True), ("a.b", True), ("../x", False), ("a/b", False), ("..", False),
                      (".", False), ("a\\b", False), ("a\x00", False)]:
            with self.subTest(p=p):
                self.assertEqual(naming.valid_prefix(p), ok)


class LogLines(unittest.TestCase):
    def test_prefix(self):
        self.assertRegex(naming.log_prefix(1, 2), r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d TP1\] $")
        self.assertRegex(naming.log_prefix(0, 1), r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] $")

    def test_lines_match_real_sglang(self):
        # Real SGLang lines from the project's seeds; ours must parse the same way.
        real_prefill = ("Prefill batch, #new-seq: 1, #new-token: 8, #cached-token: 3, token usage: 0.00, "
                        "#running-req: 0, #queue-req: 0,")
        real_decode = ("Decode batch, #running-req: 1, #token: 24, token usage: 0.00, cuda graph: True, "
                       "gen throughput (token/s): 35.99, #queue-req: 0,")
        self.assertEqual(naming.prefill_line(1, 8, 3, 0.0, 0, 0), real_prefill)
        self.assertEqual(naming.decode_line(1, 24, 0.0, True, 35.99, 0), real_decode)
        if os.path.isdir(SEEDS):
            text = "".join(open(os.path.join(SEEDS, f), encoding="utf-8", errors="replace").read()
                           for f in os.listdir(SEEDS))
            self.assertIn(real_prefill, text)
            self.assertIn(real_decode, text)
            self.assertIn(naming.profiling_done_line("/data/kaiyuan/llm_infer/profiles"), text)

    def test_profiling_lines(self):
        self.assertEqual(naming.profiling_starts_line("/o", "1.2"),
                         "Profiling starts. Traces will be saved to: /o (with profile id: 1.2)")
        self.assertEqual(naming.profiling_starts_line("/o", "1.2", "EXTEND"),
                         "Profiling starts for EXTEND. Traces will be saved to: /o (with profile id: 1.2)")
        self.assertEqual(naming.stop_profiling_line("DECODE"), "Stop profiling-DECODE...")
        self.assertEqual(naming.stop_profiling_line(), "Stop profiling...")


class LayerMarker(unittest.TestCase):
    def test_sglang_text(self):
        # The text SGLang's PytHooks pushes: "{}".format(dict), keys in this order.
        got = naming.layer_marker("model.model.layers.0.mlp.down_proj", {"weight": [2048, 2816]}, [[8, 2816]],
                                  {"in_features": 2816, "out_features": 2048})
        self.assertEqual(got, "{'Module': 'model.model.layers.0.mlp.down_proj', 'TrainableParams': "
                              "{'weight': [2048, 2816]}, 'Inputs': [[8, 2816]], 'StaticParams': "
                              "{'in_features': 2816, 'out_features': 2048}}")
        self.assertEqual(ast.literal_eval(got)["Module"], "model.model.layers.0.mlp.down_proj")

    def test_optional_keys_left_out(self):
        self.assertEqual(naming.layer_marker("model"), "{'Module': 'model'}")
        self.assertEqual(naming.layer_marker("model.x", None, [[1], [2, 3]]), "{'Module': 'model.x', 'Inputs': [[1], [2, 3]]}")


class Tokenizer(unittest.TestCase):
    def test_round_trip_ascii(self):
        ids = tokenizer.encode("Hi!")
        self.assertEqual(ids[0], tokenizer.BOS)
        self.assertEqual(tokenizer.decode(ids[1:]), "Hi!")

    def test_any_id_is_one_printable_char(self):
        for i in [0, 1, 2, 3, 130, 258, 259, 31999, 10 ** 6]:
            s = tokenizer.decode([i])
            self.assertEqual(len(s), 1)
            self.assertTrue(s.isprintable(), (i, s))

    def test_utf8(self):
        self.assertEqual(len(tokenizer.encode("é")), 3)  # BOS + two bytes


if __name__ == "__main__":
    unittest.main()
