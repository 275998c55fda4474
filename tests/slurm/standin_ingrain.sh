#!/usr/bin/env bash
# STAND-IN for `ingrain run`, used by test_slurm.sh while the iteration driver (mpi/driver.c,
# issue 8) still stops after setup. It honours the driver's contract so that the Slurm machinery
# (ingrain.sbatch, sweeps, report) is tested for real; test_slurm.sh switches to the real binary
# with INGRAIN_SLURM_STANDIN=0. Every command but `run` goes to the real binary ($INGRAIN_REAL).
#   standin_ingrain.sh run CONFIG [--set KEY=VALUE]... [--resume]
# Contract honoured:
# - the effective config (from the real `ingrain config`) goes to RUN_DIR/config.yaml;
# - run.iterations iterations of STANDIN_STEP_S seconds each (default 1); each appends a
#   `"type": "iteration"` record to RUN_DIR/metrics.jsonl computed from a state that only the
#   checkpoint carries (so a resume that loses it gives different numbers), then writes the
#   checkpoint RUN_DIR/iter_NNNN.h5 (a text file here; temporary name, then rename);
# - SIGUSR1/SIGTERM: finish the current iteration, checkpoint, exit 75 on every rank;
# - --resume: continue from the newest iter_NNNN.h5, metrics.jsonl rewritten from its copy;
# - normal completion: exit 0 and write RUN_DIR/DONE last.
# Rank 0 (SLURM_PROCID / OMPI_COMM_WORLD_RANK) does the work; the other ranks wait for its exit code.
set -uo pipefail
[ "${1:-}" = run ] || exec "$INGRAIN_REAL" "$@"
shift
config=$1
shift
args=() resume=0
while [ $# -gt 0 ]; do
  case $1 in
    --resume) resume=1 ;;
    --set) args+=(--set "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
[ "$resume" -eq 1 ] && args+=(--set run.resume=auto)
effective=$("$INGRAIN_REAL" config "$config" "${args[@]}") || exit 2
key() { # key SECTION KEY: a value of the effective config
  awk -v s="$1:" -v k="$2:" '$0 == s { inside = 1; next } /^[^ ]/ { inside = 0 } inside && $1 == k { print $2 }' \
    <<<"$effective"
}
run_dir=$(key run dir | tr -d '"') seed=$(key run seed) iterations=$(key run iterations)

rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-0}}
rc_file=$run_dir/.standin-rc.${PMIX_NAMESPACE:-solo}.${SLURM_RESTART_COUNT:-0}
stop=0
trap 'stop=1' USR1 TERM

if [ "$rank" -ne 0 ]; then
  while [ ! -s "$rc_file" ]; do sleep 0.1; done
  exit "$(cat "$rc_file")"
fi
finish() { echo "$1" >"$rc_file.tmp" && mv "$rc_file.tmp" "$rc_file"; exit "$1"; }

mkdir -p "$run_dir"
printf '%s\n' "$effective" >"$run_dir/config.yaml"
echo "[rank 0/${SLURM_NTASKS:-1}] stand-in run: $iterations iterations, seed $seed, run directory $run_dir"

# state: a linear congruential stream seeded by run.seed; carried only in the checkpoint
start=0 state=$seed
: >"$run_dir/metrics.jsonl.new"
if [ "$resume" -eq 1 ]; then
  last=$(ls "$run_dir"/iter_[0-9][0-9][0-9][0-9].h5 2>/dev/null | sort | tail -1)
  if [ -n "$last" ]; then
    read -r start state <"$last"
    tail -n +2 "$last" >"$run_dir/metrics.jsonl.new"
    echo "[rank 0] resumed from $last: iteration $start"
  fi
fi
mv "$run_dir/metrics.jsonl.new" "$run_dir/metrics.jsonl"

for ((it = start; it < iterations; it++)); do
  sleep "${STANDIN_STEP_S:-1}"
  state=$(((state * 1103515245 + 12345) % 2147483648))
  student=$(awk -v s="$state" 'BEGIN { printf "%.4f", (s % 1000) / 1000 }')
  teacher=$(awk -v s="$state" 'BEGIN { printf "%.4f", (s % 997) / 997 }')
  printf '{"type": "iteration", "iteration": %d, "student_success": %s, "teacher_success": %s, "mean_turns": %d, "premature_rate": 0.25, "tokens_per_episode": %d, "pool_size": %d, "train_loss": 0.5, "seconds": %s}\n' \
    "$it" "$student" "$teacher" $((3 + state % 5)) $((100 + state % 50)) $((it + 1)) "$SECONDS" >>"$run_dir/metrics.jsonl"
  ckpt=$(printf '%s/iter_%04d.h5' "$run_dir" $((it + 1)))
  { echo "$((it + 1)) $state"; cat "$run_dir/metrics.jsonl"; } >"$ckpt.tmp" && mv "$ckpt.tmp" "$ckpt"
  echo "[rank 0] iteration $it: student $student teacher $teacher"
  if [ "$stop" -eq 1 ] && [ $((it + 1)) -lt "$iterations" ]; then
    echo "[rank 0] stop signal: checkpoint $ckpt written, exiting 75"
    finish 75
  fi
done
: >"$run_dir/DONE"
finish 0
