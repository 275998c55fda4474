# Helpers the e2e and Slurm test scripts source: a counted check, and SIGUSR1 (what Slurm sends
# before a time limit) delivered to a running job once its log shows a point.

passed=0 failed=0
# each job's guard against a hang (`timeout`), not a time limit on the test: ample for the 2-core CI
# machine; slower builds (sanitizers, coverage) set INGRAIN_TEST_JOB_TIMEOUT higher
job_timeout=${INGRAIN_TEST_JOB_TIMEOUT:-600}
guarded() { # guarded LOG COMMAND...: the command under the hang guard, output appended to LOG
  local log=$1; shift
  timeout "$job_timeout" "$@" >>"$log" 2>&1
  local rc=$?
  [ "$rc" -ne 124 ] || echo "$log: stopped by the ${job_timeout} s hang guard (INGRAIN_TEST_JOB_TIMEOUT)"
  return "$rc"
}
check() { # check NAME COMMAND...: the command must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

# usr1_when JOB LOG PATTERN RUN_DIR: once LOG matches PATTERN (or 2 minutes passed), SIGUSR1 to
# every `ingrain run` of RUN_DIR, then wait for the background job JOB; returns its exit status
usr1_when() {
  local job=$1 log=$2 pattern=$3 dir=$4
  for _ in $(seq 1 1200); do grep -q "$pattern" "$log" 2>/dev/null && break; sleep 0.1; done
  pkill -USR1 -f "ingrain run .*run.dir=$dir"
  wait "$job"
}
