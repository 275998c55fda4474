#!/usr/bin/env python3
"""The headline metrics of an Nsight Compute CSV (ncu --csv --page details): one line per
profiled launch with its duration, compute and memory throughput (% of peak), achieved
occupancy, issue slots busy, registers per thread and block size, for tools/gpu_check.sh's log.
    usage: ncu_summary.py FILE.csv
"""
import csv
import sys

WANT = ["Duration", "Compute (SM) Throughput", "Memory Throughput", "DRAM Throughput",
        "Achieved Occupancy", "Theoretical Occupancy", "Issue Slots Busy", "Registers Per Thread",
        "Block Size", "Dynamic Shared Memory Per Block"]


def main(path):
    with open(path, newline="") as f:
        lines = f.readlines()
    # ncu prints its own messages ("==PROF==") before the CSV header
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"ncu_summary: {path} holds no ncu CSV (no profiled launch?)")
    launches = {}
    for row in csv.DictReader(lines[start:]):
        key = (row["ID"], row["Kernel Name"])
        m = launches.setdefault(key, {})
        if row["Metric Name"] in WANT:
            m[row["Metric Name"]] = f'{row["Metric Value"]} {row["Metric Unit"]}'.strip()
    for (lid, name), m in launches.items():
        print(f"launch {lid}: {name[:90]}")
        print("    " + "; ".join(f"{k} {m[k]}" for k in WANT if k in m))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
