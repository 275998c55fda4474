#!/usr/bin/python3
"""Reference data for tests/unit/test_model.c, from an independent PyTorch implementation.

Regenerate (PyTorch 1.13 lives in the Debian python, not the pyenv one on PATH):
    /usr/bin/python3 tools/model_reference.py tests/data/model

Builds three tiny random decoders in plain PyTorch (no transformers package), written
from the HF modeling code's conventions, not from the C code:
  llama  untied head, GQA (4 q heads over 2 kv heads), rope_theta 10000, llama3 RoPE scaling
  qwen3  tied head, GQA, QK-norm (RMSNorm over head_dim on q and k, before RoPE), H*hd != D
  qwen2  tied head, one kv head, q/k/v biases, linear RoPE scaling
For each it runs, in float64, a right-padded batch with per-sequence lengths and writes the
weights, the batch, the logits, the weighted cross-entropy, every parameter's gradient, and
the losses and gradient norms of 10 AdamW steps (torch.optim.AdamW, decay on matrices only,
torch.nn.utils.clip_grad_norm_, linear warmup + cosine schedule).

File format (<name>.bin, little-endian), a flat list of named arrays:
    magic b"IGRF", u32 version = 1, u32 count, then count entries of
    u32 name_len, name (utf-8), u32 dtype (0 = f32, 1 = i32), u32 ndim, u32 dims[ndim], data
Parameters are named "param.<name>" and gradients "grad.<name>" with the names and stacked
layouts of model/model_config.h (per-layer tensors are (L, rows, cols)).
"""
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)

ROPE_NONE, ROPE_LINEAR, ROPE_LLAMA3 = 0, 1, 2

CONFIGS = {
    "llama": dict(vocab_size=64, dim=48, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=12, hidden_dim=96,
                  rope_theta=10000.0, norm_eps=1e-5, tied=0, qkv_bias=0, qk_norm=0, rope_scaling=ROPE_LLAMA3,
                  rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_seq_len=16),
    "qwen3": dict(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, hidden_dim=64,
                  rope_theta=1000000.0, norm_eps=1e-6, tied=1, qkv_bias=0, qk_norm=1, rope_scaling=ROPE_NONE,
                  rope_factor=1.0, rope_low_freq_factor=0.0, rope_high_freq_factor=0.0, rope_original_max_seq_len=0),
    "qwen2": dict(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=8, hidden_dim=80,
                  rope_theta=10000.0, norm_eps=1e-6, tied=1, qkv_bias=1, qk_norm=0, rope_scaling=ROPE_LINEAR,
                  rope_factor=2.0, rope_low_freq_factor=0.0, rope_high_freq_factor=0.0, rope_original_max_seq_len=0),
}
INT_KEYS = ["vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "tied", "qkv_bias",
            "qk_norm", "rope_scaling", "rope_original_max_seq_len"]
FLOAT_KEYS = ["rope_theta", "norm_eps", "rope_factor", "rope_low_freq_factor", "rope_high_freq_factor"]

BATCH, SEQ, LENGTHS = 3, 12, [12, 8, 1]
ADAMW = dict(lr=1e-2, min_lr_ratio=0.1, warmup_steps=3, total_steps=10, beta1=0.9, beta2=0.95, eps=1e-8,
             weight_decay=0.1, grad_clip=0.5, steps=10)


# ----------------------------------------------------------------------------
# parameters in the stacked layout of model_config.h

def param_shapes(c):
    L, D, F, V = c["n_layers"], c["dim"], c["hidden_dim"], c["vocab_size"]
    Q, K, hd = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"], c["head_dim"]
    shapes = [("embed", (V, D)), ("attn_norm", (L, D)), ("wq", (L, Q, D)), ("wk", (L, K, D)), ("wv", (L, K, D))]
    if c["qkv_bias"]:
        shapes += [("bq", (L, Q)), ("bk", (L, K)), ("bv", (L, K))]
    if c["qk_norm"]:
        shapes += [("q_norm", (L, hd)), ("k_norm", (L, hd))]
    shapes += [("wo", (L, D, Q)), ("mlp_norm", (L, D)), ("w_gate", (L, F, D)), ("w_up", (L, F, D)),
               ("w_down", (L, D, F)), ("final_norm", (D,))]
    if not c["tied"]:
        shapes += [("lm_head", (V, D))]
    return shapes


def is_norm(name):
    return name.endswith("norm") or name in ("bq", "bk", "bv")


def init_params(c, gen):
    # larger than a real init so that every path carries signal; norm weights away from 1
    params = {}
    for name, shape in param_shapes(c):
        if name.endswith("norm"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif name in ("bq", "bk", "bv"):
            t = 0.2 * torch.randn(shape, generator=gen)
        elif name == "embed":
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            t = 0.15 * torch.randn(shape, generator=gen)
        # values representable in float32, since the C side reads them as float32
        params[name] = t.float().double().requires_grad_(True)
    return params


# ----------------------------------------------------------------------------
# the model, following transformers' modeling_llama / qwen2 / qwen3

def rope_inv_freq(c):
    hd = c["head_dim"]
    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    if c["rope_scaling"] == ROPE_LINEAR:
        return inv_freq / c["rope_factor"]
    if c["rope_scaling"] == ROPE_LLAMA3:
        factor, lo, hi = c["rope_factor"], c["rope_low_freq_factor"], c["rope_high_freq_factor"]
        old_len = c["rope_original_max_seq_len"]
        low_freq_wavelen, high_freq_wavelen = old_len / lo, old_len / hi
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, inv_freq_llama)
    return inv_freq


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(c, p, tokens):
    B, T = tokens.shape
    H, KV, hd, eps = c["n_heads"], c["n_kv_heads"], c["head_dim"], c["norm_eps"]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), rope_inv_freq(c))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((T, T), float("-inf")).triu(1)
    x = p["embed"][tokens]
    for l in range(c["n_layers"]):
        h = rmsnorm(x, p["attn_norm"][l], eps)
        q, k, v = h @ p["wq"][l].T, h @ p["wk"][l].T, h @ p["wv"][l].T
        if c["qkv_bias"]:
            q, k, v = q + p["bq"][l], k + p["bk"][l], v + p["bv"][l]
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, KV, hd).transpose(1, 2)
        v = v.view(B, T, KV, hd).transpose(1, 2)
        if c["qk_norm"]:
            q, k = rmsnorm(q, p["q_norm"][l], eps), rmsnorm(k, p["k_norm"][l], eps)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(B, T, H * hd) @ p["wo"][l].T
        h = rmsnorm(x, p["mlp_norm"][l], eps)
        x = x + (torch.nn.functional.silu(h @ p["w_gate"][l].T) * (h @ p["w_up"][l].T)) @ p["w_down"][l].T
    x = rmsnorm(x, p["final_norm"], eps)
    return x @ (p["embed"] if c["tied"] else p["lm_head"]).T


def ce_loss(logits, targets, weights):
    lp = torch.log_softmax(logits, dim=-1)
    nll = -lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * weights).sum()


def lr_at(step):
    a = ADAMW
    if step < a["warmup_steps"]:
        return a["lr"] * (step + 1) / a["warmup_steps"]
    min_lr = a["lr"] * a["min_lr_ratio"]
    if step >= a["total_steps"]:
        return min_lr
    ratio = (step - a["warmup_steps"]) / (a["total_steps"] - a["warmup_steps"])
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (a["lr"] - min_lr)


# ----------------------------------------------------------------------------
# batch, reference values, file

def make_batch(c, gen):
    V = c["vocab_size"]
    tokens = torch.randint(0, V, (BATCH, SEQ), generator=gen)
    targets = torch.full((BATCH, SEQ), -1, dtype=torch.int64)
    weights = torch.zeros(BATCH, SEQ)
    for b, n in enumerate(LENGTHS):
        tokens[b, n:] = -1  # padding: the C side must ignore it
        targets[b, : n - 1] = tokens[b, 1:n]
        keep = torch.rand(n - 1, generator=gen) > 0.2  # a loss mask with holes
        weights[b, : n - 1] = keep.double()
    weights /= weights.sum()
    return tokens, targets, weights


def reference(name, c, seed):
    gen = torch.Generator().manual_seed(seed)
    params = init_params(c, gen)
    tokens, targets, weights = make_batch(c, gen)
    out = {}
    for k in INT_KEYS:
        out["config." + k] = torch.tensor([c[k]], dtype=torch.int32)
    for k in FLOAT_KEYS:
        out["config." + k] = torch.tensor([c[k]], dtype=torch.float32)
    for k, t in params.items():
        out["param." + k] = t.detach().float()
    out["tokens"] = tokens.int()
    out["lengths"] = torch.tensor(LENGTHS, dtype=torch.int32)
    out["targets"] = targets.int()
    out["weights"] = weights.float()

    logits = forward(c, params, tokens.clamp(min=0))
    loss = ce_loss(logits, targets, weights.float().double())
    loss.backward()
    out["logits"] = logits.detach().float()
    out["loss"] = loss.detach().float().reshape(1)
    for k, t in params.items():
        out["grad." + k] = t.grad.float()

    # 10 AdamW steps from the same weights
    params = {k: t.detach().clone().requires_grad_(True) for k, t in params.items()}
    a = ADAMW
    groups = [{"params": [t for k, t in params.items() if not is_norm(k)], "weight_decay": a["weight_decay"]},
              {"params": [t for k, t in params.items() if is_norm(k)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    losses, norms = [], []
    for step in range(a["steps"]):
        opt.zero_grad()
        loss = ce_loss(forward(c, params, tokens.clamp(min=0)), targets, weights.float().double())
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), a["grad_clip"])))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.step()
        losses.append(float(loss))
    for k in ["lr", "min_lr_ratio", "beta1", "beta2", "eps", "weight_decay", "grad_clip"]:
        out["adamw." + k] = torch.tensor([a[k]], dtype=torch.float32)
    for k in ["warmup_steps", "total_steps", "steps"]:
        out["adamw." + k] = torch.tensor([a[k]], dtype=torch.int32)
    out["train.losses"] = torch.tensor(losses, dtype=torch.float32)
    out["train.grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    print(f"{name}: loss {float(out['loss'][0]):.6f}, after {a['steps']} steps {losses[-1]:.6f}, "
          f"grad norms {norms[0]:.3f}..{norms[-1]:.3f}")
    return out


def write(path, arrays):
    with open(path, "wb") as f:
        f.write(b"IGRF" + struct.pack("<II", 1, len(arrays)))
        for name, t in arrays.items():
            t = t.contiguous()
            dtype = {torch.float32: 0, torch.int32: 1}[t.dtype]
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", dtype, t.dim()))
            f.write(struct.pack(f"<{t.dim()}I", *t.shape))
            f.write(t.numpy().astype("<f4" if dtype == 0 else "<i4").tobytes())


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/model"
    os.makedirs(outdir, exist_ok=True)
    for i, (name, c) in enumerate(CONFIGS.items()):
        write(os.path.join(outdir, name + ".bin"), reference(name, c, 1234 + i))


if __name__ == "__main__":
    main()
