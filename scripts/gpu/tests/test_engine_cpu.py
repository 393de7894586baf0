"""The torch engine itself (spawned ranks importing torch, prefill and decode, the layerwise
hooks, torch.profiler traces under SGLang's names) on torch's CPU backend, through the
server's self-check. Needs torch (see test_model_cpu.py); skipped without it."""
import os
import subprocess
import sys
import tempfile
import unittest

from tests import util

try:
    import torch  # noqa: F401
except ImportError:
    torch = None

TINY = ["--num-layers", "2", "--hidden-size", "256", "--intermediate-size", "512", "--num-attention-heads", "4",
        "--num-key-value-heads", "2", "--vocab-size", "1000"]


@unittest.skipIf(torch is None, "torch is not installed here; the GPU machine's --self-check covers the engine")
class EngineOnCPU(unittest.TestCase):
    def test_self_check_two_ranks(self):
        d = tempfile.mkdtemp(prefix="engine-cpu-")
        r = subprocess.run([sys.executable, util.SERVER, "--engine", "torch", "--device", "cpu", "--self-check",
                            "--self-check-dir", d, "--tp", "2", "--slow-rank", "1", "--enable-layerwise-nvtx-marker"]
                           + TINY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:])
        self.assertRegex(r.stdout, r"SELF-CHECK: \d+ passed, 0 failed")
        self.assertIn("SELF-CHECK PASS layerwise NVTX ranges", r.stdout)
        self.assertIn("SELF-CHECK SKIP CUDA_PROFILER", r.stdout)
        # Real torch.profiler output, one per rank, under SGLang's names.
        traces = sorted(n for n in os.listdir(os.path.join(d, "manual")) if n.endswith(".trace.json.gz"))
        self.assertEqual([n.split("-TP-")[1] for n in traces], ["0.trace.json.gz", "1.trace.json.gz"])

if __name__ == "__main__":
    unittest.main()
