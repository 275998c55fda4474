#!/usr/bin/env bash
# End-to-end test of the `ingrain` CLI: help and exit codes, config and rank-layout errors
# reported once under MPI, and the effective config. (Runs of the pipeline: test_run_*.)
#   usage: test_cli.sh INGRAIN_BINARY SOURCE_DIR MPIEXEC
set -uo pipefail
ingrain=$1 src=$2 mpiexec=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$src/tests/e2e/lib.sh"
expect() { # expect NAME EXIT_CODE PATTERN COMMAND... : exit code and a line of output (stdout+stderr)
  local name=$1 code=$2 pattern=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -qF -- "$pattern" <<<"$out"; then
    failed=$((failed + 1)); echo "FAIL: $name (exit $rc, wanted $code; pattern '$pattern')"; echo "$out" | head -20
  else
    passed=$((passed + 1))
  fi
}
mpirun_n() { local n=$1; shift; "$mpiexec" -n "$n" --oversubscribe "$@"; }

# ---- help and usage errors
expect "no command" 2 "usage: ingrain <command>" "$ingrain"
expect "--help" 0 "commands:" "$ingrain" --help
for cmd in run config inspect bench version; do
  expect "$cmd --help" 0 "usage:" "$ingrain" "$cmd" --help
done
expect "unknown command" 2 "unknown command 'frob'" "$ingrain" frob
expect "unknown option" 2 "unknown option '--frob'" "$ingrain" config --frob
expect "version" 0 "HDF5:" "$ingrain" version
expect "inspect missing file" 2 "cannot open the file" "$ingrain" inspect "$work/none.h5"
echo "not hdf5" >"$work/plain.txt"
expect "inspect non-HDF5" 2 "not an HDF5 file" "$ingrain" inspect "$work/plain.txt"
expect "bench unknown" 2 "unknown benchmark 'frob'" "$ingrain" bench frob

# ---- config errors: named once, exit code 2 on every rank
printf 'run:\n  seed: 1\ndistill:\n  lr: fast\n' >"$work/bad.yaml"
expect "config error" 2 "bad.yaml:4: distill.lr: expected a finite number, got 'fast'" "$ingrain" config "$work/bad.yaml"
out=$(mpirun_n 4 "$ingrain" run "$work/bad.yaml" 2>&1)
check "config error at np=4 printed once" test "$(grep -c "distill.lr: expected a finite number" <<<"$out")" -eq 1
check "config error at np=4 from rank 0" grep -qF "[rank 0/4] error: invalid configuration" <<<"$out"
printf 'ranks:\n  trainer: 2\n  aggregator: 1\n  rollout: 4\n' >"$work/ranks.yaml"
out=$(mpirun_n 4 "$ingrain" run "$work/ranks.yaml" 2>&1)
check "rank layout error names the sizes" grep -qF "ranks.rollout (4) = 7, but the job has 4 MPI ranks" <<<"$out"
expect "--set error" 2 "--set distill.lrr=1: unknown key 'distill.lrr' (did you mean 'distill.lr'?)" \
  "$ingrain" config "$src/configs/quickstart.yaml" --set distill.lrr=1

# ---- the effective config reproduces itself: loading it gives the same effective config
"$ingrain" config "$src/configs/quickstart.yaml" --set distill.lr=0.003 >"$work/effective.yaml" 2>&1
check "config applies --set" grep -qx "  lr: 0.003" "$work/effective.yaml"
"$ingrain" config "$work/effective.yaml" >"$work/again.yaml" 2>&1
check "effective config round-trips" cmp -s "$work/effective.yaml" "$work/again.yaml"

# ---- bootstrap --where: the cache directory of a config's base model, nothing trained or created
where=$("$ingrain" bootstrap "$src/configs/quickstart.yaml" --set bootstrap.cache_dir="$work/cache" --where 2>/dev/null)
check "bootstrap --where names the cache directory" bash -c "[[ '$where' =~ ^$work/cache/tiny-wikisearch-[0-9a-f]{16}\$ ]]"
check "bootstrap --where creates nothing" test ! -e "$work/cache"
other=$("$ingrain" bootstrap "$src/configs/quickstart.yaml" --set bootstrap.cache_dir="$work/cache" \
  --set bootstrap.epochs=3 --where 2>/dev/null)
check "bootstrap --where: another recipe, another directory" test "$where" != "$other"

echo "test_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
