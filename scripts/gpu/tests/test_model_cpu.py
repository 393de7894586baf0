"""The model, KV cache and layerwise hooks on torch's CPU backend, float32, a tiny shape:
decoding from the cache must give what a full prefill of the same sequence gives, a padded
batch what each request alone gives. Needs torch (any build >= 1.13); skipped without it
(the GPU machine's --self-check covers the CUDA parts: graphs, NCCL, the profilers).

On a Debian machine without pip: apt-get download python3-torch and its dependencies,
dpkg -x them into a folder, point PYTHONPATH and LD_LIBRARY_PATH there (see
docs/gpu-validation.md), and run this file with /usr/bin/python3.
"""
import ast
import unittest

from tests import util  # noqa: F401  (sys.path)
from gpuserver import args as argsmod

try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    from gpuserver import model


ARGS = ["--engine", "torch", "--hidden-size", "64", "--num-attention-heads", "4", "--num-key-value-heads", "2",
        "--intermediate-size", "128", "--num-layers", "2", "--vocab-size", "300", "--context-length", "32",
        "--max-running-requests", "4"]


@unittest.skipIf(torch is None, "torch is not installed here; the GPU machine's --self-check covers the model")
class Model(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_grad_enabled(False)

    def make(self, *extra, rank=0):
        args = argsmod.parse(ARGS + list(extra))
        shape = model.load_shape(args)
        m = model.build(shape, args, rank, torch.device("cpu"), torch.float32, None)
        kv = model.KVCache(shape.layers, args.max_running_requests, args.context_length,
                           shape.kv_heads // args.tp_size, shape.head_dim, torch.float32, torch.device("cpu"))
        return args, shape, m, kv

    def prefill(self, m, kv, slot, ids):
        t = torch.tensor(ids)
        return m.logits(t, torch.arange(len(ids)), model.Batch(kv, False, slot=slot))[0]

    def decode(self, m, kv, slots, ids, pos):
        p = torch.tensor(pos)
        return m.logits(torch.tensor(ids), p, model.Batch(kv, True, slots=torch.tensor(slots), positions=p))

    def test_shape_from_flags(self):
        args, shape, m, kv = self.make()
        self.assertEqual((shape.hidden, shape.heads, shape.kv_heads, shape.head_dim, shape.layers),
                         (64, 4, 2, 16, 2))
        self.assertEqual(kv.k[0].shape, (5, 32, 2, 16))  # 4 slots + scratch

    def test_decode_from_cache_equals_full_prefill(self):
        args, shape, m, kv = self.make()
        seq = [1, 40, 77, 12, 5]
        seq.append(int(self.prefill(m, kv, 0, seq).argmax()))
        for _ in range(8):
            got = self.decode(m, kv, [0], [seq[-1]], [len(seq) - 1])[0]
            want = self.prefill(m, kv, 3, seq)  # slot 3: a scratch prefill of the whole sequence
            self.assertTrue(torch.allclose(got, want, atol=1e-4), (got - want).abs().max())
            seq.append(int(got.argmax()))

    def test_padded_batch_equals_single_requests(self):
        args, shape, m, kv = self.make()
        a, b = [1, 9, 8, 7], [1, 100, 101]
        ta = int(self.prefill(m, kv, 0, a).argmax())
        tb = int(self.prefill(m, kv, 1, b).argmax())
        single = [self.decode(m, kv, [0], [ta], [len(a)])[0], self.decode(m, kv, [1], [tb], [len(b)])[0]]
        s = kv.scratch
        batch = self.decode(m, kv, [0, 1, s, s], [ta, tb, 0, 0], [len(a), len(b), 0, 0])
        for i in range(2):
            self.assertTrue(torch.allclose(batch[i], single[i], atol=1e-4))
        self.assertTrue(torch.isfinite(batch).all())  # padding rows attend to position 0 only, no NaN

    def test_greedy_forward_is_argmax(self):
        args, shape, m, kv = self.make()
        ids = [1, 2, 3]
        out = m(torch.tensor(ids), torch.arange(3), model.Batch(kv, False, slot=0))
        self.assertEqual(out.tolist(), [int(self.prefill(m, kv, 0, ids).argmax())])

    def test_weights_reproducible_and_sharded_per_rank(self):
        _, _, m1, _ = self.make("--tp", "2")
        _, _, m2, _ = self.make("--tp", "2")
        _, _, r1, _ = self.make("--tp", "2", rank=1)
        for (n, p), (_, q), (_, r) in zip(m1.named_parameters(), m2.named_parameters(), r1.named_parameters()):
            self.assertTrue(torch.equal(p, q), n)
            sharded = any(s in n for s in model.SHARDED)
            self.assertEqual(not torch.equal(p, r), sharded and "norm" not in n, n)

    def test_tp_split_shapes(self):
        _, shape, m, kv = self.make("--tp", "2")
        layer = m.model.layers[0]
        self.assertEqual(tuple(layer.self_attn.qkv_proj.weight.shape), ((2 + 2 * 1) * 16, 64))
        self.assertEqual(tuple(layer.self_attn.o_proj.weight.shape), (64, 2 * 16))
        self.assertEqual(tuple(layer.mlp.gate_up_proj.weight.shape), (2 * 64, 64))
        self.assertEqual(tuple(layer.mlp.down_proj.weight.shape), (64, 64))
        self.assertEqual(tuple(m.lm_head.weight.shape), (300, 64))  # replicated
        self.assertEqual(kv.k[0].shape[2], 1)  # this rank's kv heads

    def test_layerwise_marker_texts(self):
        _, _, m, kv = self.make()
        pushed, popped = [], []
        mk = model.LayerwiseMarker(pushed.append, lambda: popped.append(1))
        mk.register(m, module_prefix="model")
        self.prefill(m, kv, 0, [1, 2, 3, 4])
        self.assertEqual(len(pushed), len(popped))
        self.assertEqual(mk.pushed, len(pushed))
        texts = [ast.literal_eval(t) for t in pushed]
        names = [t["Module"] for t in texts]
        # SGLang registers with module_prefix="model" on the CausalLM: "model.model.layers.N..."
        for want in ("model.model", "model.model.embed_tokens", "model.model.layers.0",
                     "model.model.layers.0.self_attn.qkv_proj", "model.model.layers.0.self_attn.attn",
                     "model.model.layers.1.mlp.down_proj", "model.model.norm", "model.lm_head"):
            self.assertIn(want, names)
        self.assertNotIn("model.model.layers", names)  # a ModuleList is never called
        qkv = texts[names.index("model.model.layers.0.self_attn.qkv_proj")]
        self.assertEqual(qkv, {"Module": "model.model.layers.0.self_attn.qkv_proj",
                               "TrainableParams": {"weight": [128, 64]}, "Inputs": [[4, 64]],
                               "StaticParams": {"in_features": 64, "out_features": 128}})
        self.assertEqual(list(texts[0]), ["Module", "Inputs"])  # the CausalLM: ids and positions, no params of its own
        self.assertEqual(texts[0]["Inputs"], [[4], [4]])
        emb = texts[names.index("model.model.embed_tokens")]
        self.assertEqual(emb["StaticParams"], {"num_embeddings": 300, "embedding_dim": 64})

    def test_reference_attention_matches_torch(self):
        # The fallback for torch < 2.0 against torch's own kernel, where torch has one.
        import torch.nn.functional as F
        if not hasattr(F, "scaled_dot_product_attention"):
            self.skipTest("this torch has no scaled_dot_product_attention to compare with")
        g = torch.Generator().manual_seed(3)
        q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
        mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
        mask[..., 0] = True
        for kw in ({"attn_mask": mask}, {"is_causal": True}):
            self.assertTrue(torch.allclose(model._reference_sdpa(q, k, v, **kw),
                                           F.scaled_dot_product_attention(q, k, v, **kw), atol=1e-5))

    def test_rotary_positions_matter(self):
        args, shape, m, kv = self.make()
        a = self.decode(m, kv, [0], [5], [3])[0]
        b = self.decode(m, kv, [1], [5], [7])[0]
        self.assertFalse(torch.allclose(a, b))


if __name__ == "__main__":
    unittest.main()
