#!/usr/bin/python3
"""Reference values of the distillation losses for tests/unit/test_trainer.c, from PyTorch autograd.

Regenerate (PyTorch 1.13 lives in the Debian python, not the pyenv one on PATH):
    /usr/bin/python3 tools/distill_reference.py tests/data/distill/losses.json

Written from the definitions in docs/DISTILL.md, not from the C code. Per row (one token's V
student logits z, the teacher's top-k ids with log-probs lp and tail mass, a sampled id y and the
sampler's log-prob old_lp of y), in float64:
  buckets      P = renormalised teacher top-k + tail; Q = student probabilities of the ids + the
               rest of the vocabulary as one bucket
  forward_kl   KL(P || Q)      reverse_kl  KL(Q || P)   (a zero bucket under a log counts as 1e-30)
  jsd_<beta>   beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q
  sft          -log q_y
  sampled      c = rho (log q_y - log p_y), rho = exp(log q_y - old_lp), p_y the teacher's bucket
               probability of y (the tail spread like the student's tail); gradient c (onehot(y) - q)
  entropy      of q over the vocabulary;  agree  argmax q == the teacher's top-1
Gradients are d loss / d z by autograd (the sampled estimator through the surrogate c.detach() log q_y).
The logits are rounded to float32 first, so C and PyTorch see the same inputs.
"""
import json
import os
import sys

import torch

torch.set_default_dtype(torch.float64)

N, V, K = 6, 23, 5
BETAS = [0.1, 0.5, 0.9]
FLOOR = 1e-30


def buckets(z, ids, lp, tail):
    q = torch.softmax(z, dim=0)
    mask = torch.zeros(V, dtype=torch.bool)
    mask[ids] = True
    Q = torch.cat([q[ids], q[~mask].sum().reshape(1)])
    S = torch.exp(lp).sum() + tail
    P = torch.cat([torch.exp(lp) / S, (tail / S).reshape(1)])
    return P, Q


def flog(x):
    # a zero probability under a log is floored at 1e-30, as model/loss.h specifies
    return torch.log(torch.clamp(x, min=FLOOR))


def kl(a, b):
    # sum a log(a / b), 0 log 0 = 0
    nz = a > 0
    return (a[nz] * (flog(a[nz]) - flog(b[nz]))).sum()


def row_losses(z0, ids, lp, tail, y, old_lp):
    out = {}

    def run(name, fn):
        z = z0.clone().requires_grad_(True)
        value, surrogate = fn(z)
        (surrogate if surrogate is not None else value).backward()
        out[name] = {"loss": float(value), "grad": z.grad.tolist()}

    run("forward_kl", lambda z: (kl(*buckets(z, ids, lp, tail)), None))
    run("reverse_kl", lambda z: (kl(*reversed(buckets(z, ids, lp, tail))), None))
    for beta in BETAS:
        def jsd(z, beta=beta):
            P, Q = buckets(z, ids, lp, tail)
            M = beta * P + (1 - beta) * Q
            return beta * kl(P, M) + (1 - beta) * kl(Q, M), None
        run("jsd_%g" % beta, jsd)
    run("sft", lambda z: (-torch.log_softmax(z, dim=0)[y], None))

    def sampled(z):
        lq = torch.log_softmax(z, dim=0)
        P, Q = buckets(z.detach(), ids, lp, tail)
        hit = (ids == y).nonzero()
        lpy = flog(P[hit[0, 0]]) if len(hit) else flog(P[K]) + lq[y].detach() - flog(Q[K])
        c = torch.exp(lq[y].detach() - old_lp) * (lq[y].detach() - lpy)
        return c, c * lq[y]
    run("sampled", sampled)

    q = torch.softmax(z0, dim=0)
    out["entropy"] = float(-(q * torch.log(q)).sum())
    out["agree"] = int(int(torch.argmax(z0)) == int(ids[torch.argmax(lp)]))
    return out


def main():
    path = sys.argv[1]
    g = torch.Generator().manual_seed(7)
    rows = []
    for n in range(N):
        z = (torch.randn(V, generator=g) * 2.0).float().double()
        t = torch.randn(V, generator=g) * 2.5
        if n == 1:
            t = z.clone()  # teacher = student: every divergence 0, agreement 1
        teacher = torch.log_softmax(t, dim=0)
        lp, ids = torch.topk(teacher, K)
        tail = float(max(0.0, 1.0 - torch.exp(lp).sum()))
        if n == 2:
            lp = lp - 0.3  # top-k log-probs that do not add up: renormalised with the tail
        if n == 3:
            tail = 0.0     # no tail mass at all
        lp = lp.float().double()
        tail = float(torch.tensor(tail).float())
        # the sampled id: in the top-k for even rows, outside for odd ones
        outside = [v for v in range(V) if v not in ids.tolist()]
        y = int(ids[n % K]) if n % 2 == 0 else outside[n % len(outside)]
        old_lp = float(torch.log_softmax(z, dim=0)[y].float()) - 0.1 * n
        rec = {"z": z.tolist(), "ids": ids.tolist(), "lp": lp.tolist(), "tail": tail, "y": y, "old_lp": old_lp}
        rec.update(row_losses(z, ids, lp, torch.tensor(tail), y, torch.tensor(old_lp)))
        rows.append(rec)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"V": V, "K": K, "betas": BETAS, "rows": rows}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
