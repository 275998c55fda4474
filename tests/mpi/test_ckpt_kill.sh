#!/usr/bin/env bash
# kill -9 at several moments of checkpoint writing: the newest complete checkpoint must always
# open and verify, and no half-written file may pass for a complete one.
#   usage: test_ckpt_kill.sh TEST_CKPT_BINARY MPIEXEC WORKDIR
set -uo pipefail
bin=$1 mpiexec=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
passed=0 failed=0
for delay in 0.3 0.7 1.1 1.6 2.2; do
  dir="$work/d$delay"
  mkdir -p "$dir"
  setsid "$mpiexec" -n 2 --oversubscribe "$bin" loop "$dir" >"$dir/log" 2>&1 &
  pid=$!
  # wait for the first commit, then kill at a moment that falls anywhere inside a later write
  for _ in $(seq 1 200); do grep -q "committed 1" "$dir/log" 2>/dev/null && break; sleep 0.05; done
  sleep "$delay"
  kill -9 -- -"$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if "$mpiexec" -n 1 "$bin" verify "$dir" >"$dir/verify" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: killed after first commit + ${delay}s:"; cat "$dir/verify"; ls -l "$dir"
  fi
done
echo "test_ckpt_kill: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
