#!/usr/bin/env bash
# A real single-node Slurm cluster on localhost (recipe: specs/hpc.md §4):
# smudge slurm writes a debug grid's stage arrays and merge job, they run on
# the cluster, and the merged results give the same table and rows as a
# local run. Skips (77) when slurmctld, slurmd, munged or mungekey are not
# installed. The daemons are always stopped on exit, only the ones started
# here (pid + start time).
set -euo pipefail
SMUDGE=${SMUDGE:?path of the smudge binary}
SRC=${SMUDGE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
for tool in slurmctld slurmd munged mungekey sbatch squeue sinfo scontrol munge unmunge; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "SKIP: $tool is not installed (apt-get install slurm-wlm munge)"
        exit 77
    fi
done
export PATH=$PATH:/usr/sbin
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

# Short path: the munge socket path must stay under 108 bytes.
STATE=$(mktemp -d /tmp/smudge-slurm.XXXXXX)
chmod 0755 "$STATE"
mkdir -p "$STATE"/{etc,ctld,d,log,run,pids,munge,work}
chmod 0700 "$STATE/munge"
chmod 0755 "$STATE/run"
node=$(hostname -s)
user=$(id -un)
started=()   # "pid starttime name" of every daemon started here

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }
remember() { # pidfile name
    local pid=""
    for _ in $(seq 50); do
        [ -s "$1" ] && pid=$(cat "$1") && [ -n "$(starttime "$pid")" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || { echo "FAIL: $2 did not start (no pid in $1)"; exit 1; }
    started+=("$pid $(starttime "$pid") $2")
}
gone() { # pid starttime: true when that process no longer runs (zombies count as gone)
    local st
    st=$(awk '{print $3, $22}' "/proc/$1/stat" 2>/dev/null) || return 0
    [ "${st#* }" != "$2" ] && return 0
    [ "${st%% *}" = Z ]
}
cleanup() {
    local rc=$?
    if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    fi
    # slurmd, then slurmctld, then munged: reverse start order.
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        read -r pid st name <<<"${started[$i]}"
        gone "$pid" "$st" || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do gone "$pid" "$st" && break; sleep 0.1; done
        gone "$pid" "$st" || { echo "killing $name ($pid)"; kill -KILL "$pid" 2>/dev/null || true; }
    done
    if [ $rc -ne 0 ]; then
        echo "--- logs (test failed) ---"
        tail -n 20 "$STATE"/log/*.log 2>/dev/null || true
        tail -n 20 "$STATE"/work/sl/logs/* 2>/dev/null || true
    fi
    rm -rf "$STATE"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Unique ports: two clusters (or a stale one) must not collide.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
    ctl=$((20000 + RANDOM % 20000))
    port_free "$ctl" && port_free $((ctl + 1)) && break
done

# 1-2. munge with its own key and socket.
mungekey -c -b 1024 -k "$STATE/munge/munge.key"
chmod 0600 "$STATE/munge/munge.key"
sock=$STATE/run/munge.sock
munged --key-file="$STATE/munge/munge.key" --socket="$sock" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
remember "$STATE/run/munged.pid" munged
munge -S "$sock" -n | unmunge -S "$sock" >/dev/null

# 3. slurm.conf; the node's hardware from slurmd -C.
hw=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
export SLURM_CONF=$STATE/etc/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctl
SlurmdPort=$((ctl + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=pmix
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

# 4-5. the daemons, until the node is idle.
slurmctld -f "$SLURM_CONF"
remember "$STATE/run/slurmctld.pid" slurmctld
slurmd -f "$SLURM_CONF" -N "$node"
remember "$STATE/run/slurmd.pid" slurmd
for i in $(seq 100); do
    s=$(sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
    [ "$s" = idle ] && break
    case "$s" in down* | drain*) scontrol update nodename="$node" state=resume || true ;; esac
    sleep 0.1
done
[ "$s" = idle ] || { echo "FAIL: node state '$s', not idle"; exit 1; }

# The grid: the smoke debug grid (70 units, 3 stages), run locally first.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
W=$STATE/work
cd "$W"
grid=$SRC/configs/smoke-debug.json
"$SMUDGE" run "$grid" --out local.h5 --work-dir local-work --no-progress 2>local.err ||
    { cat local.err; echo "FAIL: local run"; exit 1; }

# Three tasks per stage with MaxArraySize 2: every stage is split in two
# arrays; two MPI ranks per task (srun --mpi=pmix).
"$SMUDGE" slurm "$grid" --tasks 3 --max-array-size 2 --ranks-per-task 2 \
    --out-dir "$W/sl" --work-dir "$W/slurm-work" --time 00:10:00 --submit >submit.out
cat submit.out
merge=$(awk '/^merge:/ {print $2}' submit.out)
[ -n "$merge" ] || { echo "FAIL: no merge job id"; exit 1; }
n_arrays=$(grep -c '^ids="\$ids:' "$W/sl/submit.sh")
[ "$n_arrays" -eq 6 ] || { echo "FAIL: expected 6 arrays (3 stages x 2 chunks), got $n_arrays"; exit 1; }

for i in $(seq 600); do
    [ -z "$(squeue -h -j "$merge" 2>/dev/null)" ] && break
    sleep 0.2
done
[ -z "$(squeue -h -j "$merge" 2>/dev/null)" ] || { echo "FAIL: merge job still queued after 120 s"; squeue; exit 1; }
grep -q "JobId=$merge .*JobState=COMPLETED" "$STATE/log/jobcomp.txt" ||
    { echo "FAIL: merge job did not complete"; grep "JobId=$merge" "$STATE/log/jobcomp.txt" || true; exit 1; }
[ -f "$W/sl/results.h5" ] || { echo "FAIL: no merged results"; exit 1; }
"$SMUDGE" results check "$W/sl/results.h5"
# Every task wrote its shard under the array job id, and renamed it.
n_shards=$(ls "$W"/sl/shards/*/*.h5 | wc -l)
[ "$n_shards" -eq 9 ] || { echo "FAIL: expected 9 shards (3 stages x 3 tasks), got $n_shards"; exit 1; }
! ls "$W"/sl/shards/*/*.tmp 2>/dev/null || { echo "FAIL: a shard was left under its temp name"; exit 1; }

# Same table, same rows (timing, host, rank and Slurm columns aside).
for layout in stages methods; do
    for metric in fsr ppl; do
        # Table rows come in order of first appearance, which depends on
        # scheduling: compare them as sets of lines.
        "$SMUDGE" table local.h5 --layout $layout --metric $metric | sort >t_local
        "$SMUDGE" table "$W/sl/results.h5" --layout $layout --metric $metric | sort >t_slurm
        [ -s t_local ] || { echo "FAIL: empty $layout/$metric table"; exit 1; }
        diff t_local t_slurm || { echo "FAIL: $layout/$metric tables differ"; exit 1; }
    done
done
norm='del(.time_start, .time_end, .wall_seconds, .peak_rss_bytes, .host, .rank, .slurm_job_id, .slurm_array_job_id, .slurm_array_task_id)'
"$SMUDGE" results show local.h5 --latest | jq -cS "$norm" | sort >r_local
"$SMUDGE" results show "$W/sl/results.h5" --latest | jq -cS "$norm" | sort >r_slurm
[ "$(wc -l <r_local)" -eq 70 ] || { echo "FAIL: local run has $(wc -l <r_local) rows, not 70"; exit 1; }
diff r_local r_slurm || { echo "FAIL: rows differ"; exit 1; }
# Every row carries its Slurm ids and node.
bad=$("$SMUDGE" results show "$W/sl/results.h5" --latest |
    jq -r 'select(.slurm_job_id < 0 or .slurm_array_job_id < 0 or .slurm_array_task_id < 0 or .host == "") | .unit_key')
[ -z "$bad" ] || { echo "FAIL: rows without Slurm ids: $bad"; exit 1; }
echo "ok: $(wc -l <r_slurm) rows, tables identical, 6 arrays + merge on a local Slurm cluster"
