#!/usr/bin/env python3
"""Two `ingrain bench model --profile` outputs side by side: per op and per matmul shape, the calls
and ms per step of each, the difference and the ratio; the ops' total first. Reads the last profile
in each file (a whole gpu_check log works), so a lease's base and new profiles compare in one table.
  usage: tools/profile_compare.py BASE.txt NEW.txt
"""
import re
import sys

OP = re.compile(r"^\s{4}(\w+)\s+(\d+)\s+([\d.]+)\s+[\d.]+%$")
SHAPE = re.compile(r"^\s+(\d+) x\s+(\d+) x\s+(\d+) ([NT]{2})\s+(\d+)\s+([\d.]+)\s+[\d.]+%\s+([\d.]+) TFLOP/s$")
TOTAL = re.compile(r"profile \(\d+ steps?, every op synchronised\): ([\d.]+) ms per step in ops")


def last_profile(path):
    """(total ms, {op: (calls, ms)}, {shape: (calls, ms, tflops)}) of the file's last profile"""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    starts = [i for i, line in enumerate(lines) if TOTAL.search(line)]
    if not starts:
        sys.exit(f"profile_compare: no profile ('... ms per step in ops') in {path}")
    i = starts[-1]
    total = float(TOTAL.search(lines[i]).group(1))
    ops, shapes = {}, {}
    for line in lines[i + 1:]:
        m = OP.match(line)
        if m:
            ops[m.group(1)] = (int(m.group(2)), float(m.group(3)))
            continue
        m = SHAPE.match(line)
        if m:
            key = f"{m.group(1)} x {m.group(2)} x {m.group(3)} {m.group(4)}"
            shapes[key] = (int(m.group(5)), float(m.group(6)), float(m.group(7)))
            continue
        if line.strip() and not line.strip().startswith(("op ", "matmul shapes", "(")):
            break
    return total, ops, shapes


def ratio(a, b):
    return f"{b / a:6.2f}x" if a > 0 and b > 0 else "     -"


def table(title, base, new, width):
    print(f"{title:<{width}} {'calls':>13} {'base ms':>9} {'new ms':>9} {'new-base':>9} {'new/base':>8}")
    keys = sorted(set(base) | set(new), key=lambda k: -max(base.get(k, (0, 0))[1], new.get(k, (0, 0))[1]))
    for k in keys:
        cb, mb = base.get(k, (0, 0.0))[:2]
        cn, mn = new.get(k, (0, 0.0))[:2]
        print(f"{k:<{width}} {cb:>6}/{cn:<6} {mb:9.3f} {mn:9.3f} {mn - mb:+9.3f} {ratio(mb, mn):>8}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    tb, ob, sb = last_profile(sys.argv[1])
    tn, on, sn = last_profile(sys.argv[2])
    print(f"ops in a profiled step: base {tb:.2f} ms, new {tn:.2f} ms ({tn - tb:+.2f} ms, {ratio(tb, tn).strip()})")
    table("op", ob, on, 18)
    print()
    table("matmul shape", sb, sn, 27)


if __name__ == "__main__":
    main()
