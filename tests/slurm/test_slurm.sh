#!/usr/bin/env bash
# Slurm test (ctest label `slurm`) on a REAL single-node cluster (munge + slurmctld + slurmd,
# tests/slurm/slurm_cluster.sh): slurm/ingrain.sbatch gets the time-limit warning signal
# mid-run, checkpoints, requeues itself and finishes with the metrics of an uninterrupted run;
# a config error fails the job without requeue; a 2-cell sweep runs as a job array; re-running
# the sweep skips the finished cells; `ingrain report` summarises it. The daemons are stopped by
# PID on every exit. Polls with generous deadlines; no sleep is a timing assertion.
#   usage: test_slurm.sh INGRAIN_BINARY SOURCE_DIR WORK_DIR
set -uo pipefail
ingrain=$(realpath "$1") src=$(realpath "$2") work=$3

# ----------------------------------------------------------------------------
# The jobs run the real `ingrain run` on the quickstart at reduced size (tests/e2e/small.yaml +
# REDUCED), its base model bootstrapped once before the jobs start; run.iterations is high enough
# that a job is still running when it is signalled after its first iteration.
config=$src/tests/e2e/small.yaml
REDUCED=(run.iterations=4) # run.iterations first: the checks read it
NTASKS=2                   # ranks per job (colocated, as in the quickstart)

# ----------------------------------------------------------------------------
# helpers

source "$src/tests/e2e/lib.sh"
wait_for() { # wait_for SECONDS WHAT COMMAND...: poll until the command succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "FAIL: gave up after $1 s waiting for $what"; return 1; fi
    sleep 0.5
  done
}
job_field() { # job_field JOBID KEY: a field of `scontrol show job` (first task of an array)
  scontrol show job -o "$1" 2>/dev/null | head -1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'
}
job_gone() { [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; } # no task pending or running
iterations_in() { [ -s "$1" ] && [ "$(grep -c '"type": *"iteration"' "$1")" -ge "$2" ]; }
# the iterations recorded in a metrics.jsonl, comma-separated
iteration_list() {
  python3 -c 'import json, sys; print(",".join(str(r["iteration"]) for r in map(json.loads, open(sys.argv[1]))
                                              if r.get("type") == "iteration"))' "$1"
}
show_logs() {
  echo "---- logs"
  for f in "$work"/*.out "$work"/sweep/logs/*.out; do [ -f "$f" ] && { echo "== $f"; tail -30 "$f"; }; done
  tail -15 "$work"/cluster/log/slurmctld.log 2>/dev/null
}

# ----------------------------------------------------------------------------
# the cluster

for tool in sbatch srun scontrol squeue slurmctld slurmd munged; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
    { echo "SKIP: $tool not found (install slurm-wlm munge; scripts/test.sh does)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: starting munge and slurmd needs root"; exit 77; }

rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
# shellcheck source=slurm_cluster.sh
source "$src/tests/slurm/slurm_cluster.sh"
cleanup() {
  local ids
  ids=$(squeue -h -o %A 2>/dev/null | sort -u)
  [ -n "$ids" ] && scancel $ids 2>/dev/null && wait_for 30 "jobs to end" eval '[ -z "$(squeue -h 2>/dev/null)" ]'
  slurm_stop
}
trap cleanup EXIT
slurm_start "$work/cluster" || exit 1

# A requeued job may start again only after the job credential lifetime (AuthInfo cred_expire,
# 120 s by default), and the main scheduler runs every 60 s: shorten both on this test cluster.
# slurmctld reads them at start, so restart it (by its PID; slurm_stop then stops the new one).
sed -i 's/^SchedulerParameters=.*/SchedulerParameters=defer_batch=0,sched_interval=2/' "$SLURM_CONF"
echo "AuthInfo=cred_expire=5" >>"$SLURM_CONF"
kill "$SLURM_TEST_CTLD_PID"
wait_for 30 "slurmctld to stop" eval '! kill -0 "$SLURM_TEST_CTLD_PID" 2>/dev/null' || exit 1
setsid /usr/sbin/slurmctld -D -f "$SLURM_CONF" >>"$work/cluster/log/slurmctld.out" 2>&1 &
SLURM_TEST_CTLD_PID=$!
wait_for 30 "the node to come back" eval 'sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix"' || exit 1

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # the jobs run as root here
sets=()
for kv in "${REDUCED[@]}"; do sets+=(--set "$kv"); done
export INGRAIN=$ingrain
# the jobs share the cache (bootstrap.cache_dir, relative to this directory): fill it once
"$ingrain" bootstrap "$config" "${sets[@]}" >bootstrap.txt 2>&1 || { cat bootstrap.txt; exit 1; }

# ----------------------------------------------------------------------------
# 1. signal mid-run -> checkpoint -> requeue -> resume, beside an uninterrupted reference

submit() { # submit NAME: the quickstart at reduced size; run directory runs/NAME (the job name)
  sbatch --parsable -J "$1" -n "$NTASKS" --overcommit --oversubscribe -o "$work/$1.out" \
    "$src/slurm/ingrain.sbatch" "$config" "${sets[@]}"
}
job=$(submit requeue) && ref=$(submit reference) && cancel=$(submit cancelled)
check "sbatch accepted the jobs" test -n "$job" -a -n "$ref" -a -n "$cancel"
metrics=runs/requeue/metrics.jsonl
wait_for 120 "the first iteration of job $job" iterations_in "$metrics" 1 || { show_logs; exit 1; }
check "job $job still running when signalled" test "$(job_field "$job" JobState)" = RUNNING
scancel --signal=USR1 --batch "$job" # what --signal=B:USR1@120 sends before the time limit
# scancel (SIGTERM to every process): a checkpoint, but no requeue
wait_for 120 "the first iteration of job $cancel" iterations_in runs/cancelled/metrics.jsonl 1
scancel "$cancel"
wait_for 180 "job $job to finish after its requeue" \
  eval '[ "$(job_field "$job" JobState)" = COMPLETED ] && [ -e runs/requeue/DONE ]'
wait_for 180 "the reference job $ref" eval '[ "$(job_field "$ref" JobState)" = COMPLETED ]'

check "job restarted once (scontrol Restarts=1)" test "$(job_field "$job" Restarts)" = 1
check "reference job never restarted" test "$(job_field "$ref" Restarts)" = 0
check "batch shell forwarded the signal" grep -q "received SIGUSR1: forwarding it to the job step" requeue.out
check "step stopped with a checkpoint and was requeued" grep -q "exit 75): requeueing job $job" requeue.out
check "second start logged as restart 1" grep -q "job $job, restart 1:" requeue.out
check "rank layout logged" grep -q "rank layout (srun --distribution=block" requeue.out
check "requeued job finished" grep -q "ingrain finished (exit 0)" requeue.out
has_checkpoint() { compgen -G "$1/iter_*.h5" >/dev/null || compgen -G "$1/ckpt/iter_*.h5" >/dev/null; }
check "checkpoints in the run directory" has_checkpoint runs/requeue
n_iter=${REDUCED[0]#run.iterations=}
check "every iteration once, in order" test "$(iteration_list "$metrics")" = "$(seq -s, 0 $((n_iter - 1)))"
check "metrics identical to the uninterrupted run (timings aside)" \
  python3 "$src/tools/compare_metrics.py" "$metrics" runs/reference/metrics.jsonl

wait_for 120 "job $cancel to end" job_gone "$cancel"
check "scancel: job cancelled" test "$(job_field "$cancel" JobState)" = CANCELLED
check "scancel: not requeued" test "$(job_field "$cancel" Restarts)" = 0
check "scancel: log says why" grep -q "on SIGTERM (scancel, preemption or the time limit): not requeued" cancelled.out

# a config error fails the job at once: exit 2, never requeued
bad=$(sbatch --parsable -J badconfig -n 1 -o "$work/badconfig.out" "$src/slurm/ingrain.sbatch" "$config" \
  --set distill.lr=fast)
wait_for 60 "job $bad to fail" eval '[ "$(job_field "$bad" JobState)" = FAILED ]'
check "config error: exit code 2" test "$(job_field "$bad" ExitCode)" = 2:0
check "config error: not requeued" test "$(job_field "$bad" Restarts)" = 0
check "config error: named in the log" grep -q "distill.lr: expected a finite number, got 'fast'" badconfig.out
out=$(INGRAIN=/nonexistent/ingrain bash "$src/slurm/ingrain.sbatch" "$config" 2>&1); rc=$?
check "missing binary: exit 2" test "$rc" = 2
check "missing binary: says to build it" grep -q "is missing or not executable. Build it before" <<<"$out"

# ----------------------------------------------------------------------------
# 2. a 2-cell sweep through one job array, re-run, report

{
  echo "name: mini"
  echo "base: $config"
  echo "out: sweep"
  echo "seeds: [1]"
  echo "set:"
  for kv in "${REDUCED[@]}"; do echo "  ${kv%%=*}: ${kv#*=}"; done
  echo "axes:"
  echo "  regime:"
  echo "    off_policy: {distill.regime: off_policy, distill.loss: forward_kl}"
  echo "    on_policy: {distill.regime: on_policy, distill.loss: reverse_kl}"
  echo "slurm:"
  echo "  ntasks: $NTASKS"
  echo "  overcommit: true"
  echo "  oversubscribe: true"
} >grid.yaml
"$ingrain" sweep grid.yaml --submit >sweep1.txt 2>&1
check "sweep submitted" grep -q "submitted job array" sweep1.txt
array=$(awk '/submitted job array/ { print $4 }' sweep1.txt)
check "sweep printed how to follow it" grep -q "squeue -j $array" sweep1.txt
cells_done() { [ -e sweep/off_policy/seed1/DONE ] && [ -e sweep/on_policy/seed1/DONE ]; }
wait_for 180 "job array $array" eval 'job_gone "$array" && cells_done' || { cat sweep1.txt; show_logs; }
for t in 0 1; do
  check "array task $t completed" test "$(job_field "${array}_$t" JobState)" = COMPLETED
  check "array task $t logged" grep -q "sweep mini: task $t" "sweep/logs/${array}_$t.out"
done
check "sweep cell config written" grep -q "regime: on_policy" sweep/on_policy/seed1/cell.yaml
"$ingrain" sweep grid.yaml --submit >sweep2.txt 2>&1
check "re-run skips finished cells" grep -q "0 new, 0 to resume, 2 finished (skipped)" sweep2.txt
check "re-run submits nothing" grep -q "every run is finished: nothing to submit" sweep2.txt

"$ingrain" report sweep --out report >report.txt 2>&1
check "report ran" grep -q "2 runs in 2 cells" report.txt
check "report CSV: 2 cells x $n_iter iterations" test "$(($(wc -l <report/summary.csv) - 1))" = $((2 * n_iter))
check "report Markdown" grep -q "| 2 | regime=on_policy, loss=reverse_kl | 1 | 1 | 1/1 |" report/report.md
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  check "report plots" test -s report/student_success.png -a -s report/cell_1.png -a -s report/cell_2.png
else
  check "report says why there are no plots" grep -q "plots skipped: .*matplotlib" report.txt
fi

echo "test_slurm: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || show_logs
[ "$failed" -eq 0 ]
