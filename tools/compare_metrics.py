#!/usr/bin/env python3
"""Compare two metrics.jsonl files record by record, ignoring wall-clock keys.

usage: compare_metrics.py A.jsonl B.jsonl   (exit 0 when identical, 1 with the first difference)
Used by the end-to-end tests: the same config and seed must give the same numbers on any number
of ranks and across a kill and --resume; only timings may differ.
"""
import json
import sys

TIMING_KEYS = {"seconds", "tokens_per_s", "comm_seconds"}


def records(path):
    with open(path) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f if line.strip()]


a, b = records(sys.argv[1]), records(sys.argv[2])
for i, (ra, rb) in enumerate(zip(a, b)):
    if ra != rb:
        keys = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
        print(f"record {i} differs in {keys}: {[ra.get(k) for k in keys]} vs {[rb.get(k) for k in keys]}")
        sys.exit(1)
if len(a) != len(b):
    print(f"{sys.argv[1]} has {len(a)} records, {sys.argv[2]} has {len(b)}")
    sys.exit(1)
print(f"identical: {len(a)} records")
