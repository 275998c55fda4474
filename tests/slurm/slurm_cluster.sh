#!/usr/bin/env bash
# A real single-node Slurm cluster for tests: munge + slurmctld + slurmd on this machine, with all
# state under one directory. Source it, then:
#   slurm_start DIR     start the daemons (installs nothing; the test command installs slurm-wlm munge)
#   slurm_stop          stop exactly the daemons slurm_start started, by PID
# After slurm_start, SLURM_CONF is exported and sbatch/squeue/scontrol/sacct talk to this cluster.

slurm_start() {
  local dir=$1 host cpus mem
  mkdir -p "$dir"/{state,spool,log}
  host=$(hostname)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  export SLURM_CONF="$dir/slurm.conf"
  cat >"$SLURM_CONF" <<CONF
ClusterName=ingrain-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
SlurmctldPort=$((6817 + RANDOM % 200 * 2))
SlurmdPort=$((7817 + RANDOM % 200 * 2))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SchedulerParameters=defer_batch=0
MinJobAge=600
KillWait=10
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  if [ ! -S /run/munge/munge.socket.2 ]; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
    runuser -u munge -- /usr/sbin/munged
    SLURM_TEST_MUNGE_PID=$(pgrep -u munge -n munged)
  fi
  setsid /usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
  SLURM_TEST_CTLD_PID=$!
  setsid /usr/sbin/slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
  SLURM_TEST_SLURMD_PID=$!
  export SLURM_TEST_CTLD_PID SLURM_TEST_SLURMD_PID SLURM_TEST_MUNGE_PID
  local i
  for i in $(seq 1 100); do
    if sinfo -h -o "%t" 2>/dev/null | grep -qE "idle|mix|alloc"; then return 0; fi
    sleep 0.2
  done
  echo "slurm_start: the node did not come up; logs in $dir/log" >&2
  tail -5 "$dir"/log/*.log >&2
  return 1
}

slurm_stop() {
  local pid
  for pid in ${SLURM_TEST_SLURMD_PID:-} ${SLURM_TEST_CTLD_PID:-}; do
    kill "$pid" 2>/dev/null
  done
  for pid in ${SLURM_TEST_SLURMD_PID:-} ${SLURM_TEST_CTLD_PID:-}; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  [ -n "${SLURM_TEST_MUNGE_PID:-}" ] && kill "$SLURM_TEST_MUNGE_PID" 2>/dev/null
  SLURM_TEST_SLURMD_PID="" SLURM_TEST_CTLD_PID="" SLURM_TEST_MUNGE_PID=""
}
