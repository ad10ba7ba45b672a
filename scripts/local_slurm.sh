#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try baton's SLURM path on a laptop or in CI.
#
#   sudo scripts/local_slurm.sh start    # installs slurm-wlm and munge if missing (Debian/Ubuntu)
#   sudo scripts/local_slurm.sh status
#   sudo scripts/local_slurm.sh stop
#
# Needs root (the daemons run as root here). Everything it writes lives in $BATON_SLURM_DIR
# (default /tmp/baton-slurm), plus /etc/slurm/slurm.conf and /etc/munge/munge.key.
set -euo pipefail

DIR=${BATON_SLURM_DIR:-/tmp/baton-slurm}
HOST=$(hostname -s)

need_root() {
    if [ "$(id -u)" != 0 ]; then echo "local_slurm.sh: run as root (sudo)" >&2; exit 2; fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    command -v apt-get >/dev/null || { echo "local_slurm.sh: needs apt-get (Debian/Ubuntu) to install slurm-wlm and munge" >&2; exit 2; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
        sleep 1
    fi
    munge -n | unmunge >/dev/null
}

write_conf() {
    mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=baton
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    need_root
    install_packages
    start_munge
    write_conf
    [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null || /usr/sbin/slurmctld
    [ -f "$DIR/slurmd.pid" ] && kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null || /usr/sbin/slurmd
    for _ in $(seq 1 30); do
        if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|alloc"; then
            echo "local SLURM cluster up: partition debug on $HOST ($(nproc) CPUs); logs in $DIR"
            return
        fi
        sleep 1
    done
    echo "local_slurm.sh: the cluster did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    exit 1
}

stop() {
    need_root
    for daemon in slurmd slurmctld; do
        if [ -f "$DIR/$daemon.pid" ]; then kill "$(cat "$DIR/$daemon.pid")" 2>/dev/null || true; fi
    done
    echo "local SLURM cluster stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
