#!/usr/bin/env bash
# End-to-end test of the `ingrain` CLI: help and exit codes, config and rank-layout errors
# reported once under MPI, the effective config, generate and score. (Runs of the pipeline: test_run_*.)
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

# ---- generate and score on a built-in model (random weights from --seed, byte tokenizer)
gen() { "$ingrain" generate --model tiny --threads 1 "$@"; }
gen --prompt "Which city?" --ids --temperature 0 --max-new 12 >"$work/greedy.ids" 2>"$work/greedy.err"
n_prompt=$(sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p' "$work/greedy.err")
"$ingrain" score --model tiny --threads 1 --tokens "$(cat "$work/greedy.ids")" --topk 1 >"$work/greedy.json" 2>/dev/null
# greedy decoding one token at a time through the KV cache picks, at every generated position, the
# most likely token of score's pass over the whole sequence (fed in pieces): the CLI's plumbing (the
# prompt's ids, --ids, the stop) end to end; test_decode checks the cache against the forward itself
greedy_is_argmax() {
  python3 - "$n_prompt" "$work/greedy.json" <<'PY'
import json, sys
n_prompt, d = int(sys.argv[1]), json.load(open(sys.argv[2]))
toks = d["tokens"]
assert 0 < n_prompt < len(toks) <= n_prompt + 12, (n_prompt, len(toks))
for t in range(n_prompt, len(toks)):
    assert d["topk"][t]["ids"][0] == toks[t], (t, d["topk"][t], toks[t])
PY
}
check "generate --ids: a prompt and up to --max-new tokens" test -n "$n_prompt"
check "greedy generate = score's argmax at every generated position" greedy_is_argmax
# the streamed text is the generated tokens' bytes (the byte tokenizer: ids 0..255; specials unprinted)
gen --prompt "Which city?" --temperature 0 --max-new 12 >"$work/greedy.txt" 2>/dev/null
text_is_bytes() {
  python3 - "$n_prompt" "$work/greedy.ids" "$work/greedy.txt" <<'PY'
import sys
n_prompt, ids = int(sys.argv[1]), [int(x) for x in open(sys.argv[2]).read().split(",")]
want = bytes(i for i in ids[n_prompt:] if i < 256) + b"\n"
assert open(sys.argv[3], "rb").read() == want
PY
}
check "generate's text is the generated tokens' bytes" text_is_bytes
gen --prompt "Which city?" --temperature 1 --top-p 1 --max-new 24 --seed 7 >"$work/s7a.txt" 2>/dev/null
gen --prompt "Which city?" --temperature 1 --top-p 1 --max-new 24 --seed 7 >"$work/s7b.txt" 2>/dev/null
gen --prompt "Which city?" --temperature 1 --top-p 1 --max-new 24 --seed 8 >"$work/s8.txt" 2>/dev/null
check "generate: the same seed samples the same text" cmp -s "$work/s7a.txt" "$work/s7b.txt"
check "generate: another seed, other weights and draws" bash -c "! cmp -s '$work/s7a.txt' '$work/s8.txt'"
expect "generate stops at --max-new" 0 "generated 3 tokens" gen --prompt hi --temperature 0 --max-new 3
expect "generate without --prompt" 2 "--prompt is required" gen
expect "generate --top-p 0" 2 "top_p must be in (0, 1], got 0" gen --prompt hi --top-p 0
expect "generate --temperature -1" 2 "temperature must be finite and >= 0, got -1" gen --prompt hi --temperature -1
expect "generate --max-new 0" 2 "--max-new expects an integer in 1..16777216, got '0'" gen --prompt hi --max-new 0
expect "generate --format" 2 "unknown chat format 'frob'" gen --prompt hi --format frob
expect "generate unknown model" 2 "model '$work/none' is neither a directory" \
  "$ingrain" generate --model "$work/none" --prompt hi
expect "generate: a prompt that fills the context" 2 "no room left in the model's context of 2048" \
  gen --raw --prompt "$(head -c 2048 /dev/zero | tr '\0' x)"
expect "score: an id outside the vocabulary" 2 "token 1 (id 288) is outside the model's vocabulary of 288 ids" \
  "$ingrain" score --model tiny --tokens 1,288

echo "test_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
