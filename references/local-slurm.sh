#!/usr/bin/env bash
# A real single-node SLURM (Debian's slurm-wlm and munge) for trying preimage's cluster recipes and for the tests:
# config, munge key, state and logs all under one folder, nothing in /etc. Needs root (the daemons run as root).
#   bash references/local-slurm.sh start DIR [CPUS]   # installs the packages if missing, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf                    # how sbatch, squeue, scancel and dask-jobqueue find it
#   bash references/local-slurm.sh stop DIR            # stops every daemon it started, by pid
# CPUS (default 8) is what the node advertises (SlurmdParameters=config_overrides), so that more one-core jobs than
# the machine has cores can run at once. Settings that work in a container without usable cgroups: linuxproc
# process tracking, no task plugin, cons_tres with CR_Core_Memory, no accounting database, finished jobs in a file;
# credentials that expire after 10 s, so that a requeued job may start again 10 s later (SLURM's default: 120 s).
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?a folder for the config, state and logs}")
cpus=${3:-8}

stop() {
  for pid_file in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
    if [ -f "$pid_file" ]; then
      pid=$(cat "$pid_file")
      kill "$pid" 2> /dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2> /dev/null || true
      rm -f "$pid_file"
    fi
  done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi
[ "$action" = start ] || { echo "usage: $0 start|stop DIR [CPUS]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "local SLURM needs root (its daemons run as root here)" >&2; exit 3; }
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge > /dev/null
fi

mkdir -p "$dir"/{state,spool,log,munge-key,munge-run}
chmod 700 "$dir/munge-key"  # munged refuses a key folder others can read
chmod 755 "$dir/munge-run"  # and a socket folder others cannot enter
if [ ! -f "$dir/munge-key/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge-key/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge-key/munge.key"
fi
socket="$dir/munge-run/munge.socket"
host=$(hostname -s)
memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')

cat > "$dir/slurm.conf" << EOF
ClusterName=preimage
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
# a requeued job starts again at the next scheduling pass (every 60 s by default)
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=300
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

stop  # daemons of an earlier start on the same folder
munged --key-file="$dir/munge-key/munge.key" --socket="$socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge-run/munged.seed" --force
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o %T 2> /dev/null | grep -qx idle; then
    echo "local SLURM up: export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "local SLURM did not come up; logs in $dir/log" >&2
tail -5 "$dir"/log/*.log >&2 || true
exit 1
