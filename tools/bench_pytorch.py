#!/usr/bin/python3
"""Side-by-side training throughput: ingrain's C transformer against PyTorch on the same model.

Usage (PyTorch 1.13 lives in the Debian python, not the pyenv one on PATH):
    /usr/bin/python3 tools/bench_pytorch.py BIN [--config small] [--batch 8] [--seq 256]
                                                [--threads 2] [--steps 10] [--warmup 2] [--rounds 3]
BIN is `build/ingrain` (run as `ingrain bench model ...`) or the stand-alone driver
`build/ingrain_bench_model`. Both sides train the same built-in config (model/model_config.c)
with the same batch, sequence length and thread count: forward, cross-entropy, backward,
gradient clipping and AdamW, in float32. The PyTorch model is written the way a PyTorch user
would (nn.Linear layers, explicit causal softmax attention, since 1.13 has no fused attention,
foreach AdamW). Each side reports its median step time; the variants run in turn `--rounds`
times and the best round of each is reported, which keeps a busy machine's noise out of the
ratio. PyTorch runs as it comes and with OMP_WAIT_POLICY=passive (its better setting on few
cores). Where the ingrain bench notes that OpenBLAS picked kernels below the CPU's ISA, ingrain
also runs with OPENBLAS_CORETYPE as advised. The RATIO line compares ingrain as it comes with
the best PyTorch variant.
"""
import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

# the built-in configs of model/model_config.c (byte tokenizer vocabulary: 288)
CONFIGS = {
    "tiny": dict(vocab_size=288, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, hidden_dim=384),
    "small": dict(vocab_size=288, dim=384, n_layers=8, n_heads=6, n_kv_heads=2, head_dim=64, hidden_dim=1024),
    "gpt2-124m": dict(vocab_size=50304, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, head_dim=64,
                      hidden_dim=2048),
}


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H, KV, hd, Fd = c["dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["hidden_dim"]
        self.H, self.KV, self.hd = H, KV, hd
        self.attn_norm, self.mlp_norm = RMSNorm(D), RMSNorm(D)
        self.wq = torch.nn.Linear(D, H * hd, bias=False)
        self.wk = torch.nn.Linear(D, KV * hd, bias=False)
        self.wv = torch.nn.Linear(D, KV * hd, bias=False)
        self.wo = torch.nn.Linear(H * hd, D, bias=False)
        self.w_gate = torch.nn.Linear(D, Fd, bias=False)
        self.w_up = torch.nn.Linear(D, Fd, bias=False)
        self.w_down = torch.nn.Linear(Fd, D, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask, dim=-1) @ v
        x = x + self.wo(att.transpose(1, 2).reshape(B, T, -1))
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Model(torch.nn.Module):
    def __init__(self, c, T):
        super().__init__()
        self.embed = torch.nn.Embedding(c["vocab_size"], c["dim"])
        self.layers = torch.nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"])
        hd = c["head_dim"]
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        emb = torch.cat([torch.outer(torch.arange(T).float(), inv_freq)] * 2, dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.embed.weight.T  # tied head, as the built-in configs


def bench_pytorch(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = CONFIGS[args.config]
    model = Model(c, args.seq)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    tokens = torch.randint(0, c["vocab_size"], (args.batch, args.seq))
    targets = torch.roll(tokens, -1, dims=1)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return args.batch * args.seq / statistics.median(times)


def bench_ingrain(args, env_extra):
    cmd = [args.bin]
    if os.path.basename(args.bin) == "ingrain":
        cmd += ["bench", "model"]
    cmd += ["--config", args.config, "--batch", str(args.batch), "--seq", str(args.seq), "--threads",
            str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env_extra}).stdout
    m = re.search(r"^RESULT .*", out, re.M)
    if not m:
        sys.exit(f"no RESULT line in the output of {' '.join(cmd)}:\n{out}")
    better = re.search(r"OPENBLAS_CORETYPE=(\w+) would run", out)
    return float(dict(kv.split("=") for kv in m.group(0).split()[1:])["tokens_per_s"]), out, better


def bench_pytorch_subprocess(args, env_extra):
    # libgomp reads OMP_WAIT_POLICY when it loads, so each PyTorch variant is its own process
    cmd = [sys.executable, os.path.abspath(__file__), args.bin, "--torch-only", "--config", args.config, "--batch",
           str(args.batch), "--seq", str(args.seq), "--threads", str(args.threads), "--steps", str(args.steps),
           "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env_extra}).stdout
    return float(out.split()[-1])


# PyTorch as it comes, and with OpenMP's idle threads sleeping instead of spinning against
# OpenBLAS's threads (its best setting on a small machine); the ratio is against the better one
TORCH_VARIANTS = [("pytorch", {}), ("pytorch OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"})]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin")
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        print(f"tokens_per_s {bench_pytorch(args):.1f}")
        return

    # ingrain as it comes, plus, where its bench says OpenBLAS runs kernels below this CPU's ISA
    # (OPENBLAS_CORETYPE forced in the environment, or an OpenBLAS older than the CPU), with
    # OPENBLAS_CORETYPE set as it advises
    variants = [("ingrain", {})]
    _, _, better = bench_ingrain(argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0}), {})
    if better:
        variants.append((f"ingrain OPENBLAS_CORETYPE={better.group(1)}", {"OPENBLAS_CORETYPE": better.group(1)}))
    variants += [(name, env) for name, env in TORCH_VARIANTS]
    best = {name: 0.0 for name, _ in variants}
    reports = {}
    for r in range(args.rounds):
        line = f"round {r + 1}:"
        for name, env in variants:
            if name.startswith("ingrain"):
                tok, out, _ = bench_ingrain(args, env)
                if tok > best[name]:
                    reports[name] = out
            else:
                tok = bench_pytorch_subprocess(args, env)
            best[name] = max(best[name], tok)
            line += f"  {name} {tok:.0f}"
        print(line, flush=True)
    for name, out in reports.items():
        print(f"--- {name}:\n{out}", end="")
    print(f"config {args.config}, batch {args.batch} x {args.seq}, {args.threads} threads, tokens/s, "
          f"best of {args.rounds} rounds of median step times (torch {torch.__version__}, float32):")
    best_torch = max(best[name] for name, _ in TORCH_VARIANTS)
    for name, _ in variants:
        print(f"  {name:36s} {best[name]:8.0f}   {best[name] / best_torch:5.2f}x the best pytorch")
    print(f"RATIO {best['ingrain'] / best_torch:.3f}")


if __name__ == "__main__":
    main()
