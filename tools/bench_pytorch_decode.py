#!/usr/bin/python3
"""Side-by-side decoding throughput: ingrain's KV-cache decoder against PyTorch on the same model.

Usage (PyTorch 1.13 lives in the Debian python, not the pyenv one on PATH):
    /usr/bin/python3 tools/bench_pytorch_decode.py BIN [--config small] [--batch 1,32] [--prompt 64]
                                                       [--new 128] [--threads 2] [--rounds 3]
BIN is `build/ingrain` (run as `ingrain bench decode ...`) or the stand-alone driver
`build/ingrain_bench_decode`. Both sides decode the same built-in config (model/model_config.c)
in float32 with the same batch, prompt length, new tokens and thread count: B prompts of P random
tokens prefilled in one forward, then N steps that each sample one token per sequence at
temperature 1 and feed it back through a preallocated KV cache. The PyTorch model is written the
way a careful PyTorch user would: nn.Linear layers, an in-place KV cache (B, KV, P+N, hd) per
layer, grouped-query attention by broadcasting the query groups over the shared kv heads (no
copies of k, v), torch.inference_mode, torch.multinomial. Decoding tokens/s = B * N / the time
of the N steps (prefill excluded, reported apart). Each side runs `--rounds` rounds in turn and
the best round of each is reported, which keeps a busy machine's noise out of the ratio. PyTorch
runs as it comes and with OMP_WAIT_POLICY=passive; the RATIO lines compare ingrain as it comes
with the better PyTorch variant, per batch size. Both link the same OpenBLAS: where ingrain's
bench says another OPENBLAS_CORETYPE would run faster kernels on this CPU (OpenBLAS 0.3.21 takes
Zen 4/5 for Haswell, or the environment forces a core), both sides also run with it, and the
RATIO_CORETYPE lines compare those two.

On a machine busy with other work, OpenMP teams lose their time slices at every barrier and all
figures collapse: run the script alone, or under `chrt -f 1` (real-time priority for both sides
alike; the kernel still leaves 5% of the CPU to other work) where the machine cannot be emptied.
"""
import argparse
import math
import os
import re
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


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, c, B, max_len):
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
        self.register_buffer("k_cache", torch.zeros(B, KV, max_len, hd))
        self.register_buffer("v_cache", torch.zeros(B, KV, max_len, hd))

    def forward(self, x, pos, cos, sin, mask):
        # x (B, T, D) at positions pos..pos+T-1; mask (T, pos+T) or None for one token
        B, T, _ = x.shape
        G = self.H // self.KV
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        self.k_cache[:, :, pos:pos + T] = k
        self.v_cache[:, :, pos:pos + T] = v
        keys, values = self.k_cache[:, :, :pos + T], self.v_cache[:, :, :pos + T]
        # the G query heads of a kv head attend together: (B, KV, G*T, hd) against (B, KV, L, hd)
        qg = q.reshape(B, self.KV, G * T, self.hd)
        s = qg @ keys.transpose(-1, -2) / math.sqrt(self.hd)
        if mask is not None:
            s = s.view(B, self.KV, G, T, pos + T) + mask
            s = s.view(B, self.KV, G * T, pos + T)
        att = torch.softmax(s, dim=-1) @ values
        att = att.view(B, self.H, T, self.hd).transpose(1, 2).reshape(B, T, -1)
        x = x + self.wo(att)
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Model(torch.nn.Module):
    def __init__(self, c, B, max_len):
        super().__init__()
        self.embed = torch.nn.Embedding(c["vocab_size"], c["dim"])
        self.layers = torch.nn.ModuleList(Block(c, B, max_len) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"])
        hd = c["head_dim"]
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        emb = torch.cat([torch.outer(torch.arange(max_len).float(), inv_freq)] * 2, dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, tokens, pos):
        # logits (B, V) of the last of the T new positions
        T = tokens.shape[1]
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        mask = None
        if T > 1:
            mask = torch.full((T, pos + T), float("-inf")).triu(pos + 1)
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, pos, cos, sin, mask)
        return self.norm(x[:, -1]) @ self.embed.weight.T  # tied head, as the built-in configs


def bench_pytorch(args, B):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = CONFIGS[args.config]
    P, N = args.prompt, args.new
    model = Model(c, B, P + N)
    prompts = torch.randint(0, c["vocab_size"], (B, P))
    best_prefill, best_decode = math.inf, math.inf
    with torch.inference_mode():
        for r in range(args.rounds + 1):  # round 0 warms up
            t0 = time.perf_counter()
            logits = model(prompts, 0)
            t1 = time.perf_counter()
            for i in range(N):
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1)
                logits = model(nxt, P + i)
            t2 = time.perf_counter()
            if r > 0:
                best_prefill, best_decode = min(best_prefill, t1 - t0), min(best_decode, t2 - t1)
    return B * N / best_decode, B * P / best_prefill


def bench_ingrain(args, env_extra, rounds):
    cmd = [args.bin]
    if os.path.basename(args.bin) == "ingrain":
        cmd += ["bench", "decode"]
    cmd += ["--config", args.config, "--batch", args.batch, "--prompt", str(args.prompt), "--new", str(args.new),
            "--threads", str(args.threads), "--rounds", str(rounds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env_extra}).stdout
    res = {}
    for line in re.findall(r"^RESULT .*", out, re.M):
        kv = dict(item.split("=") for item in line.split()[1:])
        res[int(kv["batch"])] = (float(kv["decode_tokens_per_s"]), float(kv["prefill_tokens_per_s"]))
    if not res:
        sys.exit(f"no RESULT line in the output of {' '.join(cmd)}:\n{out}")
    better = re.search(r"OPENBLAS_CORETYPE=(\w+) would run", out)
    return res, out, better


def bench_pytorch_subprocess(args, env_extra):
    # libgomp reads OMP_WAIT_POLICY when it loads, so each PyTorch variant is its own process
    cmd = [sys.executable, os.path.abspath(__file__), args.bin, "--torch-only", "--config", args.config, "--batch",
           args.batch, "--prompt", str(args.prompt), "--new", str(args.new), "--threads", str(args.threads),
           "--rounds", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env_extra}).stdout
    res = {}
    for line in out.splitlines():
        b, dec, pre = line.split()
        res[int(b)] = (float(dec), float(pre))
    return res


TORCH_VARIANTS = [("pytorch", {}), ("pytorch OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"})]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin")
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    if args.torch_only:
        for B in batches:
            dec, pre = bench_pytorch(args, B)
            print(f"{B} {dec:.1f} {pre:.1f}", flush=True)
        return

    # both as they come, plus, where ingrain's bench says OpenBLAS runs kernels below this CPU,
    # both with OPENBLAS_CORETYPE set as it advises (the variable applies to PyTorch's OpenBLAS too)
    variants = [("ingrain", {})] + TORCH_VARIANTS
    _, _, better = bench_ingrain(argparse.Namespace(**{**vars(args), "new": 2, "batch": "1"}), {}, 1)
    core = better.group(1) if better else None
    if core:
        env = {"OPENBLAS_CORETYPE": core}
        variants += [(f"ingrain OPENBLAS_CORETYPE={core}", env),
                     (f"pytorch OMP_WAIT_POLICY=passive OPENBLAS_CORETYPE={core}", {**env, "OMP_WAIT_POLICY": "passive"})]
    best = {name: {B: (0.0, 0.0) for B in batches} for name, _ in variants}
    for r in range(args.rounds):
        line = f"round {r + 1}:"
        for name, env in variants:
            if name.startswith("ingrain"):
                res, _, _ = bench_ingrain(args, env, 1)
            else:
                res = bench_pytorch_subprocess(args, env)
            for B in batches:
                best[name][B] = tuple(max(a, b) for a, b in zip(best[name][B], res[B]))
            line += f"  {name} " + "/".join(f"{res[B][0]:.0f}" for B in batches)
        print(line, flush=True)
    print(f"config {args.config}, prompt {args.prompt} + {args.new} new tokens, {args.threads} threads, "
          f"decoding tokens/s (prefill tokens/s), best of {args.rounds} rounds (torch {torch.__version__}, "
          f"float32, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}):")
    for B in batches:
        best_torch = max(best[name][B][0] for name, _ in TORCH_VARIANTS)
        print(f"  batch {B}:")
        for name, _ in variants:
            dec, pre = best[name][B]
            print(f"    {name:58s} {dec:9.0f} ({pre:7.0f})   {dec / best_torch:5.2f}x the best pytorch")
    for B in batches:
        best_torch = max(best[name][B][0] for name, _ in TORCH_VARIANTS)
        print(f"RATIO batch={B} {best['ingrain'][B][0] / best_torch:.3f}")
    if core:
        for B in batches:
            ours = best[f"ingrain OPENBLAS_CORETYPE={core}"][B][0]
            theirs = best[f"pytorch OMP_WAIT_POLICY=passive OPENBLAS_CORETYPE={core}"][B][0]
            print(f"RATIO_CORETYPE={core} batch={B} {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
