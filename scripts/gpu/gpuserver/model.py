"""A Llama-style decoder in torch with random weights, split over tensor-parallel ranks the
way SGLang splits it: the QKV and gate/up projections by output columns, o_proj and
down_proj by input rows followed by an all-reduce (when the ranks have one GPU each), the
embedding, norms and LM head replicated. Module names follow SGLang's Llama
(model.layers.N.self_attn.qkv_proj, ...), so the layerwise NVTX ranges read like SGLang's.

The KV cache is static ([slots + 1, context, kv heads, head dim] per layer, the last slot
a scratch slot for padding) so that a decode step has fixed shapes and can be captured in
a CUDA graph per batch size.
"""
import math
import os
import zlib
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import naming


def load_shape(args):
    """The model's shape from a transformers config: a local dir's config.json when
    --model-path is one (never weights), else a LlamaConfig from the flags. Without
    transformers the flags are used as they are (said in the returned source)."""
    cfg, source = None, None
    try:
        import transformers
    except ImportError:
        transformers = None
    if os.path.isfile(os.path.join(args.model_path, "config.json")):
        if transformers is None:
            raise RuntimeError("--model-path %s has a config.json, but transformers is not installed to read it"
                               % args.model_path)
        cfg = transformers.AutoConfig.from_pretrained(args.model_path, local_files_only=True)
        cfg = getattr(cfg, "text_config", None) or cfg
        source = "transformers %s config from %s" % (transformers.__version__, args.model_path)
    elif transformers is not None:
        cfg = transformers.LlamaConfig(
            vocab_size=args.vocab_size, hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
            num_hidden_layers=args.num_layers, num_attention_heads=args.num_attention_heads,
            num_key_value_heads=args.num_key_value_heads, max_position_embeddings=args.context_length,
            rms_norm_eps=1e-5)
        source = "transformers %s LlamaConfig" % transformers.__version__
    else:
        cfg = SimpleNamespace(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                              intermediate_size=args.intermediate_size, num_hidden_layers=args.num_layers,
                              num_attention_heads=args.num_attention_heads,
                              num_key_value_heads=args.num_key_value_heads, rms_norm_eps=1e-5)
        source = "flags (transformers not installed)"
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    shape = SimpleNamespace(vocab=cfg.vocab_size, hidden=cfg.hidden_size, inter=cfg.intermediate_size,
                            layers=cfg.num_hidden_layers, heads=heads, kv_heads=kv, head_dim=head_dim,
                            eps=getattr(cfg, "rms_norm_eps", 1e-5), rope_theta=float(theta), source=source)
    tp = args.tp_size
    for name, n in (("attention heads", heads), ("key/value heads", kv), ("intermediate size", shape.inter)):
        if n % tp:
            raise RuntimeError("the model's %s (%d) do not split over --tp-size %d" % (name, n, tp))
    if shape.vocab < 260:
        raise RuntimeError("vocab size %d: the byte tokenizer needs at least 260 ids" % shape.vocab)
    return shape


class AllReduce:
    """Sum over the ranks in place (NCCL). Used inside CUDA graph capture too: the process
    group was warmed up eagerly first."""

    def __init__(self):
        import torch.distributed as dist
        self.dist = dist

    def __call__(self, t):
        self.dist.all_reduce(t)
        return t


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        if _RMS_NORM is not None:  # torch >= 2.4: one op (a fused kernel on recent CUDA builds)
            return _RMS_NORM(x, (x.shape[-1],), self.weight, self.eps)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


_RMS_NORM = getattr(F, "rms_norm", None)


class ColumnParallelLinear(nn.Linear):
    """This rank's columns of a projection (no bias)."""

    def __init__(self, in_features, out_local):
        super().__init__(in_features, out_local, bias=False)


class RowParallelLinear(nn.Linear):
    """This rank's rows of a projection, then the sum over ranks."""

    def __init__(self, in_local, out_features, reduce):
        super().__init__(in_local, out_features, bias=False)
        self.reduce = reduce

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.reduce is not None:
            self.reduce(y)
        return y


class SiluAndMul(nn.Module):
    def forward(self, x):
        g, u = x.chunk(2, dim=-1)
        return F.silu(g) * u


class Rotary:
    """Rotary position embedding tables (in the model's dtype), looked up by position. Query
    and key heads are rotated in one go (fewer, larger kernels: every kernel of a decode
    step is one more row in a capture)."""

    def __init__(self, head_dim, max_pos, theta, device, dtype=torch.float32):
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
        f = torch.outer(torch.arange(max_pos, device=device, dtype=torch.float32), inv)
        self.cos, self.sin = f.cos().to(dtype), f.sin().to(dtype)

    def __call__(self, x, positions):  # x [T, heads, D], any strides
        cos = self.cos[positions].unsqueeze(1)
        sin = self.sin[positions].unsqueeze(1)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Batch:
    """What a forward needs besides ids and positions. Decode: slots, positions and the
    attention mask, all [B]-shaped tensors (fixed for a CUDA graph). Prefill: one request's
    slot."""

    def __init__(self, kv, decode, slots=None, positions=None, slot=None):
        self.kv, self.decode, self.slots, self.slot = kv, decode, slots, slot
        if decode:
            # position p attends to cache positions 0..p
            self.mask = (kv.seq_idx.unsqueeze(0) <= positions.unsqueeze(1)).unsqueeze(1).unsqueeze(1)


class KVCache:
    def __init__(self, layers, slots, context, kv_heads, head_dim, dtype, device):
        shape = (slots + 1, context, kv_heads, head_dim)  # + the scratch slot padding writes to
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.scratch = slots
        self.seq_idx = torch.arange(context, device=device)


class CacheAttention(nn.Module):
    """Attention over the static KV cache (SGLang's RadixAttention sits at the same place
    in the module tree, as self_attn.attn)."""

    def __init__(self, layer_id, nq, nkv, head_dim):
        super().__init__()
        self.layer_id, self.nq, self.nkv, self.head_dim = layer_id, nq, nkv, head_dim

    def forward(self, q, k, v, batch):
        kc, vc = batch.kv.k[self.layer_id], batch.kv.v[self.layer_id]
        rep = self.nq // self.nkv
        if batch.decode:
            # index_copy_ and index_select on flat indices: plain gather/scatter kernels with
            # no host sync, safe inside a CUDA graph capture.
            flat = batch.slots * kc.shape[1] + batch.positions_t
            kc.view(-1, self.nkv, self.head_dim).index_copy_(0, flat, k.contiguous())
            vc.view(-1, self.nkv, self.head_dim).index_copy_(0, flat, v.contiguous())
            keys = _gqa(torch.index_select(kc, 0, batch.slots).transpose(1, 2), rep)  # [B, nq, S, D]
            vals = _gqa(torch.index_select(vc, 0, batch.slots).transpose(1, 2), rep)
            o = _SDPA(q.unsqueeze(2), keys, vals, attn_mask=batch.mask)
            return o.reshape(q.shape[0], self.nq * self.head_dim)
        n = q.shape[0]
        kc[batch.slot, :n] = k
        vc[batch.slot, :n] = v
        qh = q.transpose(0, 1).unsqueeze(0)  # [1, nq, n, D]
        kh = _gqa(k.transpose(0, 1).unsqueeze(0), rep)
        vh = _gqa(v.transpose(0, 1).unsqueeze(0), rep)
        o = _SDPA(qh, kh, vh, is_causal=True)
        return o[0].transpose(0, 1).reshape(n, self.nq * self.head_dim)


def _reference_sdpa(q, k, v, attn_mask=None, is_causal=False):
    """softmax(q k^T / sqrt(d) + mask) v: scaled_dot_product_attention's documented
    semantics, for torch before 2.0 (the CPU test machine's Debian torch 1.13)."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool, device=s.device).tril()
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_SDPA = getattr(F, "scaled_dot_product_attention", None) or _reference_sdpa


def _gqa(t, rep):
    """[B, kv heads, S, D] -> [B, kv heads * rep, S, D], query head h reading kv head
    h // rep (as repeat_interleave, but by expand: no data-dependent size, safe in a
    CUDA graph capture)."""
    if rep == 1:
        return t
    b, h, s, d = t.shape
    return t.unsqueeze(2).expand(b, h, rep, s, d).reshape(b, h * rep, s, d)


class LlamaAttention(nn.Module):
    def __init__(self, shape, tp, layer_id, reduce, rotary):
        super().__init__()
        self.nq, self.nkv, self.d = shape.heads // tp, shape.kv_heads // tp, shape.head_dim
        self.qkv_proj = ColumnParallelLinear(shape.hidden, (self.nq + 2 * self.nkv) * self.d)
        self.o_proj = RowParallelLinear(self.nq * self.d, shape.hidden, reduce)
        self.attn = CacheAttention(layer_id, self.nq, self.nkv, self.d)
        self.rotary = rotary

    def forward(self, positions, hidden_states, batch):
        n = hidden_states.shape[0]
        qkv = self.qkv_proj(hidden_states).view(n, self.nq + 2 * self.nkv, self.d)
        qk = self.rotary(qkv[:, :self.nq + self.nkv], positions)
        q, k = qk[:, :self.nq], qk[:, self.nq:]
        v = qkv[:, self.nq + self.nkv:]
        return self.o_proj(self.attn(q, k, v, batch))


class LlamaMLP(nn.Module):
    def __init__(self, shape, tp, reduce):
        super().__init__()
        local = shape.inter // tp
        self.gate_up_proj = ColumnParallelLinear(shape.hidden, 2 * local)
        self.down_proj = RowParallelLinear(local, shape.hidden, reduce)
        self.act_fn = SiluAndMul()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, shape, tp, layer_id, reduce, rotary):
        super().__init__()
        self.self_attn = LlamaAttention(shape, tp, layer_id, reduce, rotary)
        self.mlp = LlamaMLP(shape, tp, reduce)
        self.input_layernorm = RMSNorm(shape.hidden, shape.eps)
        self.post_attention_layernorm = RMSNorm(shape.hidden, shape.eps)

    def forward(self, positions, hidden_states, batch):
        x = hidden_states + self.self_attn(positions, self.input_layernorm(hidden_states), batch)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, shape, tp, reduce, rotary):
        super().__init__()
        self.embed_tokens = nn.Embedding(shape.vocab, shape.hidden)
        self.layers = nn.ModuleList(LlamaDecoderLayer(shape, tp, i, reduce, rotary) for i in range(shape.layers))
        self.norm = RMSNorm(shape.hidden, shape.eps)

    def forward(self, input_ids, positions, batch):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(positions, x, batch)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """Greedy: the forward returns the next token id per row (the last row for a prefill)."""

    def __init__(self, shape, tp, reduce, rotary):
        super().__init__()
        self.model = LlamaModel(shape, tp, reduce, rotary)
        self.lm_head = nn.Linear(shape.hidden, shape.vocab, bias=False)

    def forward(self, input_ids, positions, batch):
        return torch.argmax(self.logits(input_ids, positions, batch), dim=-1)

    def logits(self, input_ids, positions, batch):
        batch.positions_t = positions
        x = self.model(input_ids, positions, batch)
        if not batch.decode:
            x = x[-1:]
        return self.lm_head(x)


# Parameters split over ranks get a seed per rank; the rest are the same on every rank.
SHARDED = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def init_random(model, seed, rank):
    """Random weights, reproducible: N(0, 1/fan_in) for projections, N(0, 1) for the
    embedding, ones for norms; each parameter's generator is seeded from its name (and the
    rank, for a shard)."""
    for name, p in model.named_parameters():
        p.requires_grad_(False)
        if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
            p.fill_(1.0)
            continue
        sharded = any(s in name for s in SHARDED)
        g = torch.Generator(device=p.device)
        g.manual_seed((seed * 1000003 + zlib.crc32(name.encode()) + (rank * 7919 if sharded else 0)) % (2 ** 63))
        std = 1.0 if "embed_tokens" in name else 1.0 / math.sqrt(p.shape[-1])
        p.normal_(0.0, std, generator=g)


def build(shape, args, rank, device, dtype, reduce):
    rotary = Rotary(shape.head_dim, args.context_length, shape.rope_theta, device, dtype)
    if hasattr(torch.device, "__enter__"):  # torch >= 2.0: parameters made on the GPU directly
        with torch.device(device):
            m = LlamaForCausalLM(shape, args.tp_size, reduce, rotary)
    else:
        m = LlamaForCausalLM(shape, args.tp_size, reduce, rotary).to(device)
    m = m.to(dtype).eval()
    with torch.no_grad():
        init_random(m, args.random_seed, rank)
    return m


def param_count(model):
    return sum(p.numel() for p in model.parameters())


class LayerwiseMarker:
    """SGLang's --enable-layerwise-nvtx-marker (utils/nvtx_pytorch_hooks.py, PytHooks): a
    forward pre-hook on every module (but Identity and Dropout) pushes a range whose text
    is the dict repr of naming.layer_marker, the forward hook pops it. push and pop are
    torch.cuda.nvtx.range_push/range_pop on a GPU. Hooks run when Python runs the module:
    a CUDA graph replay runs none (hence --disable-cuda-graph)."""

    SKIP = (nn.Identity, nn.Dropout) + tuple(getattr(nn, n) for n in ("Dropout1d", "Dropout2d", "Dropout3d")
                                            if hasattr(nn, n))

    def __init__(self, push, pop):
        self.push, self.pop = push, pop
        self.names = {}
        self.pushed = 0

    def register(self, model, module_prefix="model"):
        for name, module in model.named_modules(prefix=module_prefix):
            if isinstance(module, self.SKIP):
                continue
            if module in self.names:
                raise ValueError("module instance %s is not unique" % name)
            self.names[module] = name
            module.register_forward_pre_hook(self._pre)
            module.register_forward_hook(self._post)

    def _pre(self, module, inputs):
        if _compiling():
            return
        params = {n: list(p.size()) for n, p in module.named_parameters(recurse=False)}
        static = None
        if isinstance(module, nn.Linear):
            static = {"in_features": module.in_features, "out_features": module.out_features}
        elif isinstance(module, nn.Embedding):
            static = {"num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim}
        self.push(naming.layer_marker(self.names.get(module, "unknown"), params, shapes(inputs), static))
        self.pushed += 1

    def _post(self, module, inputs, output):
        if _compiling():
            return
        self.pop()


def _compiling():
    c = getattr(torch, "compiler", None)
    return bool(c is not None and hasattr(c, "is_compiling") and c.is_compiling())


def shapes(obj, out=None):
    """The shapes of the tensors in a hook's inputs, nested lists and tuples descended
    (SGLang's PytHooks.print_tensor)."""
    if out is None:
        out = []
    if isinstance(obj, (list, tuple)):
        for x in obj:
            shapes(x, out)
    elif isinstance(obj, torch.Tensor):
        out.append(list(obj.size()))
    return out
