#!/usr/bin/env bash
# End-to-end runs of the whole loop on the reduced quickstart (tests/e2e/small.yaml):
#   determinism: np = 1, 2 and 4 give identical metrics (model.threads fixed at 1)
#   kill -9 of one rank mid-run: every rank stops with the failing rank named, never a hang, and
#     `--resume` completes with the metrics of an uninterrupted run
#   SIGUSR1 (Slurm's warning): checkpoint, exit 75, `--resume` gives identical metrics
#   each of the 2x2x2 combinations of granularity x injection x regime runs one iteration, and so
#     do distill.teacher: recompute (off-policy step-wise, on-policy global with JSD) and the
#     sampled-token estimator (distill.loss: reverse_kl_sampled), with a one-item seed pool so the
#     teacher has experience in context from the first iteration
# Every run starts from a one-item seed pool: with an empty pool the teacher is the student itself
# and the driver skips the distillation of that iteration, and these tests are about training.
#   usage: test_run.sh INGRAIN SOURCE_DIR MPIEXEC WORKDIR [part]
set -uo pipefail
ingrain=$1 src=$2 mpiexec=$3 work=$4 part=${5:-all}
mkdir -p "$work"
# every run is redone (a reference left by an older build would not match); the bootstrap cache stays
find "$work" -mindepth 1 -maxdepth 1 ! -name bootstrap -exec rm -rf {} +
cfg="$src/tests/e2e/small.yaml"
compare="$src/tools/compare_metrics.py"
seed="$work/seed_pool.yaml"
printf 'items:\n  - "Search first: When a task names a page, search for it."\n' >"$seed"
common=(--set bootstrap.cache_dir="$work/bootstrap" --set experience.seed_pool="$seed")
source "$src/tests/e2e/lib.sh"
run() { # run NP DIR [args...]: a whole job, output in DIR.log
  local np=$1 dir=$2; shift 2
  rm -rf "$dir" "$dir.log"
  guarded "$dir.log" "$mpiexec" -n "$np" --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$dir" "$@"
}
resume() { # resume NP DIR: DIR's job (with the settings in over) from its newest checkpoint, appending to DIR.log
  guarded "$2.log" "$mpiexec" -n "$1" --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$2" \
    "${over[@]}" --resume
}
same() { python3 "$compare" "$1/metrics.jsonl" "$2/metrics.jsonl"; }

# the bootstrapped base model, built once for every run below
"$ingrain" bootstrap "$cfg" "${common[@]}" >"$work/bootstrap.log" 2>&1 || { cat "$work/bootstrap.log"; exit 1; }

if [ "$part" = all ] || [ "$part" = determinism ]; then
  for regime in "off_policy forward_kl" "on_policy reverse_kl"; do
    set -- $regime
    over=(--set distill.regime=$1 --set distill.loss=$2)
    for np in 1 2 4; do
      check "run $1 np=$np" run "$np" "$work/det-$1-$np" "${over[@]}"
      check "run $1 np=$np finished" test -f "$work/det-$1-$np/DONE"
    done
    check "$1: the base model was evaluated first" bash -c "head -1 '$work/det-$1-1/metrics.jsonl' | grep -q '\"type\":\"base\"'"
    check "$1: np=2 metrics = np=1" same "$work/det-$1-1" "$work/det-$1-2"
    check "$1: np=4 metrics = np=1" same "$work/det-$1-1" "$work/det-$1-4"
    check "$1: training happened" grep -q '"type":"step"' "$work/det-$1-1/metrics.jsonl"
    check "$1: the final table lists both iterations" bash -c \
      "grep -A4 'held-out success without / with experience' '$work/det-$1-1.log' | grep -Eq '^ +1 +[0-9.]+ +[0-9.]+'"
  done
fi

if [ "$part" = all ] || [ "$part" = formats ]; then
  d="$work/det-on_policy-1"
  [ -f "$d/DONE" ] || run 1 "$d" --set distill.regime=on_policy --set distill.loss=reverse_kl
  ck="$d/ckpt/iter_0002.h5"
  check "inspect names the checkpoint" bash -c "'$ingrain' inspect '$ck' | grep -q 'ingrain checkpoint, format version 1, after iteration 2'"
  check "inspect --json parses" bash -c "'$ingrain' inspect '$ck' --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"iteration\"] == 2 and [m[\"type\"] for m in d[\"metrics\"]] == [\"base\", \"iteration\", \"iteration\"]'"
  check "h5dump reads the checkpoint" bash -c "h5dump -H '$ck' >/dev/null"
  if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
    check "h5py reads the config and the weights" /usr/bin/python3 -c "
import h5py, sys
f = h5py.File('$ck', 'r')
assert bytes(f['config'][:]).decode() == open('$d/config.yaml').read()
assert f['model/wq'].shape == (4, 128, 128) and f.attrs['iteration'] == 2
"
  fi
  rm -rf "$work/export"
  check "export to HF" "$ingrain" export "$ck" --hf "$work/export"
  check "the exported model scores" bash -c "'$ingrain' score --model '$work/export' --tokens 1,2,3 >/dev/null"
  check "exported weights = checkpoint weights" /usr/bin/python3 -c "
import json, struct, numpy as np, h5py
raw = open('$work/export/model.safetensors', 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; head = json.loads(raw[8:8 + n]); base = 8 + n
b, e = head['model.layers.1.self_attn.q_proj.weight']['data_offsets']
w = np.frombuffer(raw[base + b:base + e], dtype='<f4').reshape(128, 128)
assert np.array_equal(w, h5py.File('$ck', 'r')['model/wq'][1])
"
  # a built-in model bootstrapped with a learned tokenizer exports its vocabulary and tokenizer
  dv="$work/bpe"
  check "run with a learned tokenizer" run 1 "$dv" --set bootstrap.vocab_size=300 --set run.iterations=1
  rm -rf "$work/export-bpe"
  check "export with the learned tokenizer" "$ingrain" export "$dv/ckpt/iter_0001.h5" --hf "$work/export-bpe"
  # the run's own base model (the cache also keeps those of older builds)
  bpe_model=$(grep -o "$work/bootstrap/tiny-[a-z]*-[0-9a-f]*" "$dv.log" | head -1)
  check "the export holds the learned tokenizer" cmp "$work/export-bpe/tokenizer.json" "$bpe_model/tokenizer.json"
  check "the exported BPE model scores" bash -c "'$ingrain' score --model '$work/export-bpe' --tokens 1,2,299 >/dev/null"
fi

if [ "$part" = all ] || [ "$part" = resume ]; then
  ref="$work/det-on_policy-1"
  [ -f "$ref/DONE" ] || run 1 "$ref" --set distill.regime=on_policy --set distill.loss=reverse_kl
  over=(--set distill.regime=on_policy --set distill.loss=reverse_kl --set run.iterations=2)
  # kill -9 of one rank once the first checkpoint exists
  dir="$work/killed"
  rm -rf "$dir"
  "$mpiexec" -n 2 --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$dir" "${over[@]}" \
    >"$dir.log" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do [ -f "$dir/ckpt/iter_0001.h5" ] && break; sleep 0.1; done
  victim=$(pgrep -f "ingrain run .*run.dir=$dir" | tail -1)
  kill -9 "$victim"
  wait "$job"
  rc=$?
  check "kill -9: the job failed (exit $rc)" test "$rc" -ne 0
  check "kill -9: no DONE" test ! -f "$dir/DONE"
  check "kill -9: resume completes" resume 2 "$dir"
  check "kill -9: resumed metrics = uninterrupted" same "$ref" "$dir"
  # resume on another number of ranks (and so of trainers: ZeRO-1 slices re-partitioned)
  for np in 2 1; do
    dir="$work/regroup$np"
    check "3 ranks: first iteration" run 3 "$dir" "${over[@]}" --set run.iterations=1
    check "resume the 3-rank checkpoint on $np rank(s)" resume "$np" "$dir"
    check "3 -> $np ranks: metrics = uninterrupted" same "$ref" "$dir"
  done
  # SIGUSR1 during the first iteration: checkpoint after it, exit 75, resume to the same numbers
  dir="$work/signalled"
  rm -rf "$dir"
  "$mpiexec" -n 2 --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$dir" "${over[@]}" \
    >"$dir.log" 2>&1 &
  usr1_when $! "$dir.log" "\[iter 1/2\] rollout" "$dir"
  rc=$?
  check "SIGUSR1: exit 75 (got $rc)" test "$rc" -eq 75
  check "SIGUSR1: resume completes" resume 2 "$dir"
  check "SIGUSR1: resumed metrics = uninterrupted" same "$ref" "$dir"
fi

if [ "$part" = all ] || [ "$part" = grid ]; then
  for g in principle instance; do
    for inj in stepwise global; do
      for regime in "off_policy forward_kl" "on_policy reverse_kl"; do
        set -- $regime
        d="$work/grid-$g-$inj-$1"
        check "grid $g/$inj/$1 runs one iteration" run 2 "$d" --set run.iterations=1 \
          --set experience.granularity=$g --set experience.injection=$inj --set distill.regime=$1 --set distill.loss=$2
        check "grid $g/$inj/$1 wrote an iteration record" grep -q '"type":"iteration"' "$d/metrics.jsonl"
      done
    done
  done
  for v in "recompute-off stepwise off_policy forward_kl recompute" "recompute-on global on_policy jsd recompute" \
           "sampled stepwise on_policy reverse_kl_sampled recorded"; do
    set -- $v
    d="$work/grid-$1"
    check "grid $1 runs one iteration" run 2 "$d" --set run.iterations=1 --set experience.seed_pool="$seed" \
      --set rollout.max_context=1024 --set model.max_seq_len=2048 --set experience.injection=$2 --set distill.regime=$3 --set distill.loss=$4 \
      --set distill.teacher=$5
    check "grid $1 trained" grep -q '"type":"step"' "$d/metrics.jsonl"
  done
fi

echo "test_run($part): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
