import unittest

from tests import util  # noqa: F401
from gpuserver import args as argsmod


class Parse(unittest.TestCase):
    def test_defaults_are_runnable(self):
        a = argsmod.parse([])
        self.assertEqual((a.tp_size, a.port, a.engine, a.comm), (1, 30000, "torch", "auto"))
        self.assertEqual(a.served_model_name, a.model_path)
        self.assertFalse(a.disable_cuda_graph)
        self.assertEqual(a.decode_log_interval, 40)  # SGLang's default

    def test_sglang_spellings(self):
        for flag in ("--tp", "--tp-size", "--tensor-parallel-size"):
            with self.subTest(flag=flag):
                self.assertEqual(argsmod.parse([flag, "2"]).tp_size, 2)
        a = argsmod.parse(["--enable-layerwise-nvtx-marker", "--disable-cuda-graph", "--enable-metrics"])
        self.assertTrue(a.enable_layerwise_nvtx_marker and a.disable_cuda_graph and a.enable_metrics)

    def test_refused(self):
        cases = [
            (["--tp", "0"], "--tp-size 0"),
            (["--tp", "2", "--slow-rank", "2"], "--slow-rank 2"),
            (["--tp", "3"], "does not split over --tp-size 3"),
            (["--num-attention-heads", "16", "--num-key-value-heads", "5"], "multiple of"),
            (["--hidden-size", "1000", "--num-attention-heads", "16"], "must split"),
            (["--background-requests", "100"], "--background-requests 100"),
            (["--background-requests", "1", "--background-max-tokens", "500"], "--background-max-tokens 500"),
            (["--vocab-size", "100"], "byte tokenizer"),
            (["--cuda-graph-max-bs", "0"], "--cuda-graph-max-bs"),
            (["--port", "70000"], "--port 70000"),
            (["--step-overhead-ms", "-1"], "--step-overhead-ms -1"),
        ]
        for argv, want in cases:
            with self.subTest(argv=argv):
                with self.assertRaises(argsmod.ArgError) as cm:
                    argsmod.parse(argv)
                self.assertIn(want, str(cm.exception))

    def test_cpu_device_implies_eager(self):
        self.assertTrue(argsmod.parse(["--device", "cpu"]).disable_cuda_graph)
        with self.assertRaises(argsmod.ArgError):
            argsmod.parse(["--device", "cpu", "--comm", "nccl"])

    def test_server_info_has_what_clients_detect(self):
        # nsys-agent's client detects SGLang by tp_size or model_path in /get_server_info.
        info = argsmod.server_info_args(argsmod.parse(["--tp", "2", "--engine", "fake"]))
        self.assertEqual(info["tp_size"], 2)
        self.assertIn("model_path", info)
        self.assertEqual((info["dp_size"], info["pp_size"], info["ep_size"]), (1, 1, 1))
        self.assertEqual(info["device"], "cpu")


class GraphSizes(unittest.TestCase):
    def test_table(self):
        cases = [((16, 16), [1, 2, 4, 8, 16]), ((1, 16), [1]), ((16, 3), [1, 2, 3]), ((32, 20), [1, 2, 4, 8, 16, 20]),
                 ((24, 64), [1, 2, 4, 8, 16, 24])]
        for (mx, running), want in cases:
            with self.subTest(mx=mx, running=running):
                self.assertEqual(argsmod.graph_batch_sizes(mx, running), want)


if __name__ == "__main__":
    unittest.main()
