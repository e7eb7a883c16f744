#!/usr/bin/env bash
# A real multi-node engine for tests/engines.rs (issue 13): Slurm with one controller and three
# compute "hosts" (slurmd each in its own network namespace and UTS name), a target host (its own
# namespace) running `mcpstorm serve`, an `sbatch --array=0-2` job whose tasks are the run's
# three segments (SLURM_ARRAY_TASK_ID), and an `--dependency=afterok` job that merges them.
# Adapted from ../shared/recipes/slurm-array-netns.sh (verified there). Everything is removed on
# exit. Needs root and the Debian packages slurmctld slurmd slurm-client munge (tools/test.sh).
#
#   tests/engines/slurm-segments.sh MCPSTORM_BINARY OUT_DIR
#
# Writes OUT_DIR/seg-{0,1,2}.json, merged.json, stats.json (the server's counters), timing.txt.
set -euo pipefail
bin="$1"
out="$2"
mkdir -p "$out"
work=$(mktemp -d)
sub=10.98.7
hosts=3
port=18107
tag=msl$$
cleanup() {
    for f in "$work"/slurmd-n*.pid "$work"/slurmctld.pid "$work"/serve.pid "$work"/clock.pid; do
        if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
    if [ -f "$work/munged.pid" ]; then kill "$(cat "$work/munged.pid")" 2>/dev/null || true; fi
    sleep 1
    for i in $(seq 1 "$hosts") t; do ip netns del "$tag-$i" 2>/dev/null || true; done
    ip link del "$tag-br" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/state" "$work/out"
ip link add "$tag-br" type bridge
ip addr add "$sub.1/24" dev "$tag-br"
ip link set "$tag-br" up
add_host() { # name address
    ip netns add "$tag-$1"
    ip link add "$tag-v$1" type veth peer name eth0 netns "$tag-$1"
    ip link set "$tag-v$1" master "$tag-br" up
    ip -n "$tag-$1" addr add "$2/24" dev eth0
    ip -n "$tag-$1" link set eth0 up
    ip -n "$tag-$1" link set lo up
}
add_host t "$sub.2"
for i in $(seq 1 "$hosts"); do add_host "$i" "$sub.$((10 + i))"; done

# The target host: mcpstorm serve in its own namespace.
nsenter --net="/run/netns/$tag-t" "$bin" serve --listen "$sub.2:$port" --shards 1 >"$work/serve.log" 2>&1 &
echo $! >"$work/serve.pid"

# The reference clock the segments measure themselves against, on the controller's host.
"$bin" clock --listen "$sub.1:17907" >"$work/clock.log" 2>&1 &
echo $! >"$work/clock.pid"

mkdir -p /run/munge
chown munge:munge /run/munge
if [ ! -S /run/munge/munge.socket.2 ]; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --socket=/run/munge/munge.socket.2
    cp /run/munge/munged.pid "$work/munged.pid"
fi
nodes=""
for i in $(seq 1 "$hosts"); do
    nodes+="NodeName=n$i NodeAddr=$sub.$((10 + i)) NodeHostname=n$i CPUs=1 RealMemory=2000"$'\n'
done
cat >"$work/slurm.conf" <<CONF
ClusterName=mcpstorm
SlurmctldHost=ctl($sub.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd-%n.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd-%n.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPort=16817
SlurmdPort=16818
${nodes}PartitionName=load Nodes=n[1-$hosts] Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
# slurmctld wants the host name to match SlurmctldHost; `ip netns exec` would remount /sys
# (slurmd then fails on cgroups): nsenter --net only.
unshare --uts sh -c "hostname ctl; exec slurmctld -i"
for i in $(seq 1 "$hosts"); do
    nsenter --net="/run/netns/$tag-$i" unshare --uts sh -c "hostname n$i; exec slurmd -N n$i"
done
for _ in $(seq 1 120); do
    [ "$(sinfo -h -N -o %T 2>/dev/null | grep -c idle)" = "$hosts" ] && break
    sleep 0.5
done
[ "$(sinfo -h -N -o %T | grep -c idle)" = "$hosts" ] || { echo "slurm: nodes not idle" >&2; sinfo -N >&2; exit 1; }
for _ in $(seq 1 50); do
    python3 -c "import urllib.request as u; u.urlopen('http://$sub.2:$port/mcpstorm/stats').read()" 2>/dev/null && break
    sleep 0.2
done

submit=$(date +%s.%N)
start_at=$(python3 -c "import time; print(f'{time.time() + 6:.3f}')")
sla="p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off"
job=$(sbatch --parsable --array=0-$((hosts - 1)) -n1 -o "$work/out/%a.log" --chdir "$work" --wrap \
    "'$bin' run http://$sub.2:$port/mcp --allow-host $sub.2 --segment-from-env SLURM_ARRAY_TASK_ID --segments $hosts --start-at $start_at --clock-ref $sub.1:17907 --connections 600 --rate 600 --shards 1 --phases sustained --duration 3s --mix ping:1,tools/call=echo:1 --no-discovery --quiet --sla $sla --json out/seg-\$SLURM_ARRAY_TASK_ID.json")
sbatch --parsable --dependency="afterok:$job" -o "$work/out/merge.log" --chdir "$work" --wrap \
    "'$bin' merge out/seg-0.json out/seg-1.json out/seg-2.json --json out/merged.json --sla $sla" >/dev/null
for _ in $(seq 1 240); do
    squeue -h | grep -q . || break
    sleep 0.5
done
done_at=$(date +%s.%N)
python3 -c "import urllib.request as u; print(u.urlopen('http://$sub.2:$port/mcpstorm/stats').read().decode())" >"$out/stats.json"
cp "$work"/out/* "$out"/ 2>/dev/null || true
echo "submit_to_merged_s=$(python3 -c "print(f'{$done_at - $submit:.2f}')")" >"$out/timing.txt"
[ -f "$out/merged.json" ] || { echo "slurm: no merged report" >&2; cat "$work"/out/*.log >&2 || true; tail -20 "$work/slurmctld.log" >&2; exit 1; }
echo "slurm: merged"
