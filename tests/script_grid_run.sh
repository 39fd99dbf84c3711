#!/usr/bin/env bash
# smudge plan / run on debug grids, alone and under MPI:
#   - a local run of configs/smoke-debug.json, resume, --fresh;
#   - mpiexec -n 2 gives the same rows (timing, host, rank aside);
#   - units that segfault, abort, exit, fail or return NaN are recorded as
#     failed with their message, their dependents skipped, the rest ok;
#   - a changed method parameter reruns only that method's units;
#   - a worker rank SIGKILLed mid-grid is survived (mpirun --enable-recovery;
#     with no worker left, rank 0 finishes the grid itself);
#     without recovery Open MPI ends the job and a rerun completes it;
#   - the coordinator SIGKILLed (alone, and rank 0 under MPI) and the same
#     command rerun: complete, and no unit that had finished runs again
#     (executions counted through $SMUDGE_DEBUG_LOG);
#   - a damaged results file is reported, not extended;
#   - the real track (implant, removal, evaluation of stories260K) gives
#     the same rows alone and under mpiexec -n 2.
set -euo pipefail
SMUDGE=${SMUDGE:?path of the smudge binary}
SRC=${SMUDGE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
MPIEXEC=${MPIEXEC_EXECUTABLE:-$(command -v mpiexec || true)}
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }
# hpc.md §3: root, oversubscription, one BLAS thread per rank.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d /tmp/smudge-grid-run.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*"; exit 1; }
norm='del(.time_start, .time_end, .wall_seconds, .peak_rss_bytes, .host, .rank, .slurm_job_id, .slurm_array_job_id, .slurm_array_task_id)'
rows() { "$SMUDGE" results show "$1" --latest | jq -cS "$norm" | sort; }
count() { "$SMUDGE" results show "$1" --latest | jq -r .status | grep -c "^$2\$" || true; }

# ---- plan and a local run ----
grid=$SRC/configs/smoke-debug.json
"$SMUDGE" plan "$grid" >plan.txt
grep -q "70 units in 3 stages" plan.txt || { cat plan.txt; fail "plan totals"; }
grep -q "prepare tiny-a/s1/debug\[variant=3,shared=true\]" plan.txt || fail "plan lists the shared unit"
"$SMUDGE" run "$grid" --out local.h5 --work-dir w-local 2>run1.err || { cat run1.err; fail "local run"; }
"$SMUDGE" results check local.h5
[ "$(count local.h5 ok)" -eq 70 ] || fail "local run: $(count local.h5 ok) ok rows, not 70"
"$SMUDGE" plan "$grid" --work-dir w-local | grep -q "70 already in w-local" || fail "plan sees the artifacts"
# Resume: nothing runs again.
"$SMUDGE" run "$grid" --out local.h5 --work-dir w-local 2>run2.err
grep -q "70 done before (0 recovered from artifacts); 0 executed" run2.err || { cat run2.err; fail "resume"; }
# --fresh: the old file is kept aside and everything runs.
"$SMUDGE" run "$grid" --out fresh.h5 --work-dir w-local --fresh 2>/dev/null
"$SMUDGE" run "$grid" --out fresh.h5 --work-dir w-local --fresh 2>fresh.err
grep -q "70 executed" fresh.err && [ -f fresh.h5.bak ] || { cat fresh.err; fail "--fresh"; }
diff <(rows local.h5) <(rows fresh.h5) || fail "a fresh rerun changed the numbers"

# ---- same rows under MPI ----
if [ -n "$MPIEXEC" ]; then
    "$MPIEXEC" -n 2 "$SMUDGE" run "$grid" --out mpi.h5 --work-dir w-mpi 2>mpi.err ||
        { cat mpi.err; fail "mpiexec -n 2 run"; }
    grep -q "70 executed .* on 1 worker ranks" mpi.err || { cat mpi.err; fail "mpi summary"; }
    diff <(rows local.h5) <(rows mpi.h5) || fail "mpiexec -n 2 rows differ from the local run"
    [ "$("$SMUDGE" results show mpi.h5 | jq -r .rank | sort -u | tr '\n' ' ')" = "1 " ] ||
        fail "every unit ran on the one worker rank"
fi

# ---- failures are isolated ----
cat >fail.json <<'EOF'
{"name": "fail", "track": "debug", "models": ["m"],
 "fingerprints": [{"type": "debug", "name": "fp"}],
 "methods": [{"name": "debug", "params": {"action": ["ok", "segv", "abort", "nan", "fail", "exit"],
                                         "message": "boom"}}],
 "metrics": ["fsr"], "seeds": [1]}
EOF
check_failures() { # results file
    [ "$(count "$1" ok)" -eq 5 ] && [ "$(count "$1" failed)" -eq 5 ] && [ "$(count "$1" skipped)" -eq 5 ] ||
        fail "$1: expected 5 ok, 5 failed, 5 skipped"
    local msgs
    msgs=$("$SMUDGE" results show "$1" | jq -r 'select(.status != "ok") | .message')
    for want in "crashed: signal SIGSEGV (Segmentation fault); last output: debug: boom (segv)" \
        "crashed: signal SIGABRT (Aborted); last output: debug: boom (abort)" \
        "metric 'debug_value' is NaN" "exited with code 3; last output: debug: boom (exit)" \
        "skipped: input 'remove m/fp/s1/debug[action=segv,message=boom]' failed"; do
        grep -qF "$want" <<<"$msgs" || fail "$1: no message '$want'"
    done
    grep -qx "boom" <<<"$msgs" || fail "$1: no message 'boom'"
}
if "$SMUDGE" run fail.json --out fail.h5 --work-dir w-fail 2>fail.err; then fail "exit status 0 with failed units"; fi
check_failures fail.h5
if [ -n "$MPIEXEC" ]; then
    "$MPIEXEC" -n 3 "$SMUDGE" run fail.json --out fail-mpi.h5 --work-dir w-fail-mpi 2>/dev/null || true
    check_failures fail-mpi.h5
    diff <(rows fail.h5 | jq -c 'del(.message)') <(rows fail-mpi.h5 | jq -c 'del(.message)') ||
        fail "failure rows differ between local and MPI runs"
fi

# ---- a changed parameter reruns only its subtree ----
export SMUDGE_DEBUG_LOG=$T/exec.log
sed 's/"variant": \[1, 2\], "sleep_ms": 10/"variant": [1, 5], "sleep_ms": 10/' "$grid" >changed.json
grep -q '"variant": \[1, 5\]' changed.json || fail "could not edit the grid"
: >"$SMUDGE_DEBUG_LOG"
"$SMUDGE" run changed.json --out local.h5 --work-dir w-local 2>changed.err
# variant 2 -> 5: its removal and eval, 2 models x 2 fingerprints x 2 seeds.
[ "$(grep -c '^done' "$SMUDGE_DEBUG_LOG")" -eq 16 ] || { cat changed.err; fail "changed grid ran $(grep -c '^done' "$SMUDGE_DEBUG_LOG") units, not 16"; }
[ "$(grep '^done' "$SMUDGE_DEBUG_LOG" | grep -vc 'variant=5')" -eq 0 ] || fail "an unchanged unit ran again"

# Units finished before the kill (done lines up to $1) never start again
# after it; every unit finished exactly once overall; the results are complete.
check_no_recompute() { # lines-before-rerun results-file units work-dir
    head -n "$1" "$SMUDGE_DEBUG_LOG" | awk '$1 == "done" {print $2}' | sort -u >before
    tail -n +"$(($1 + 1))" "$SMUDGE_DEBUG_LOG" | awk '$1 == "start" {print $2}' | sort -u >after
    [ -s before ] && [ -s after ] || fail "the kill did not land mid-grid (test timing)"
    [ -z "$(comm -12 before after)" ] || fail "finished units ran again: $(comm -12 before after | head -3)"
    [ "$(awk '$1 == "done"' "$SMUDGE_DEBUG_LOG" | wc -l)" -le "$3" ] || fail "a unit finished twice"
    [ "$(count "$2" ok)" -eq "$3" ] || fail "$2: $(count "$2" ok) ok rows, not $3"
    "$SMUDGE" results check "$2" >/dev/null
    # The killed units' temporary directories were swept at the rerun.
    ! find "$4" -name '*.tmp.*' | grep -q . || fail "$4: temporary directories left behind"
}
cat >slow.json <<'EOF'
{"name": "slow", "track": "debug", "models": ["m1", "m2"],
 "fingerprints": [{"type": "debug", "name": "fp", "params": {"sleep_ms": 30}}],
 "methods": [{"name": "debug", "params": {"variant": [1, 2, 3, 4], "sleep_ms": 40}}],
 "metrics": ["fsr"], "seeds": [1, 2, 3], "resources": {"parallel": 2, "heartbeat_s": 2}}
EOF
# 62 units, about 1.5 s of work on 2 slots.

# Waits until $1 units have finished (so a kill lands mid-grid on slow and
# fast machines alike).
wait_done() {
    for _ in $(seq 600); do
        [ "$(grep -c '^done' "$SMUDGE_DEBUG_LOG" || true)" -ge "$1" ] && return 0
        sleep 0.05
    done
    fail "fewer than $1 units finished in 30 s"
}

# ---- the coordinator SIGKILLed, alone ----
: >"$SMUDGE_DEBUG_LOG"
"$SMUDGE" run slow.json --out ck.h5 --work-dir w-ck 2>/dev/null &
pid=$!
wait_done 15
kill -KILL $pid
wait $pid 2>/dev/null || true
sleep 0.3 # children die with their parent (PR_SET_PDEATHSIG)
n1=$(wc -l <"$SMUDGE_DEBUG_LOG")
"$SMUDGE" run slow.json --out ck.h5 --work-dir w-ck 2>ck.err || { cat ck.err; fail "rerun after kill"; }
check_no_recompute "$n1" ck.h5 62 w-ck

if [ -n "$MPIEXEC" ]; then
    rank_pid() { # mpiexec-pid rank: pid of that MPI rank (a child of mpiexec,
        # not one of the unit processes it forks, which share its environment)
        for p in $(pgrep -P "$1" || true); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p" && return
        done
        return 0
    }
    # ---- rank 0 (the coordinator) SIGKILLed ----
    : >"$SMUDGE_DEBUG_LOG"
    "$MPIEXEC" -n 3 "$SMUDGE" run slow.json --out ck-mpi.h5 --work-dir w-ck-mpi 2>/dev/null &
    mp=$!
    wait_done 15
    r0=$(rank_pid $mp 0)
    [ -n "$r0" ] || fail "rank 0 not found"
    kill -KILL "$r0"
    if wait $mp 2>/dev/null; then fail "mpiexec exited 0 after rank 0 was killed"; fi
    sleep 0.3
    n1=$(wc -l <"$SMUDGE_DEBUG_LOG")
    "$MPIEXEC" -n 3 "$SMUDGE" run slow.json --out ck-mpi.h5 --work-dir w-ck-mpi 2>ck-mpi.err ||
        { cat ck-mpi.err; fail "mpi rerun after killing rank 0"; }
    check_no_recompute "$n1" ck-mpi.h5 62 w-ck-mpi

    # ---- a worker rank SIGKILLed without recovery: Open MPI ends the job;
    #      the rerun completes it ----
    : >"$SMUDGE_DEBUG_LOG"
    "$MPIEXEC" -n 3 "$SMUDGE" run slow.json --out wk.h5 --work-dir w-wk 2>/dev/null &
    mp=$!
    wait_done 15
    r1=$(rank_pid $mp 1)
    [ -n "$r1" ] || fail "rank 1 not found"
    kill -KILL "$r1"
    if wait $mp 2>/dev/null; then echo "note: the run finished before the kill landed"; fi
    sleep 0.3
    n1=$(wc -l <"$SMUDGE_DEBUG_LOG")
    "$MPIEXEC" -n 3 "$SMUDGE" run slow.json --out wk.h5 --work-dir w-wk 2>wk.err ||
        { cat wk.err; fail "rerun after killing a worker"; }
    check_no_recompute "$n1" wk.h5 62 w-wk

    # ---- a worker rank dies mid-grid under --enable-recovery: survived ----
    cat >kill.json <<'EOF'
{"name": "kill", "track": "debug", "models": ["m"],
 "fingerprints": [{"type": "debug", "name": "fp"}],
 "methods": [{"name": "debug", "params": {"variant": [1, 2, 3, 4, 5, 6], "sleep_ms": 100}},
             {"name": "debug", "params": {"action": "kill-worker", "only_seed": 2, "sleep_ms": 50}}],
 "metrics": ["fsr"], "seeds": [1, 2], "resources": {"heartbeat_s": 2}}
EOF
    unset SMUDGE_DEBUG_LOG
    "$MPIEXEC" --enable-recovery -n 3 "$SMUDGE" run kill.json --out kill.h5 --work-dir w-kill \
        2>kill.err || true
    grep -q "worker rank [12] (.*) stopped responding" kill.err || { cat kill.err; fail "no lost worker reported"; }
    [ "$(count kill.h5 ok)" -eq 31 ] && [ "$(count kill.h5 failed)" -eq 1 ] && [ "$(count kill.h5 skipped)" -eq 1 ] ||
        { cat kill.err; fail "kill.h5: want 31 ok, 1 failed, 1 skipped"; }
    "$SMUDGE" results show kill.h5 | jq -r 'select(.status == "failed") | .message' |
        grep -q "stopped responding .* while running this unit" || fail "the dead worker's unit message"
    # The only worker dies: rank 0 finishes the grid itself.
    "$MPIEXEC" --enable-recovery -n 2 "$SMUDGE" run kill.json --out kill1.h5 --work-dir w-kill1 \
        2>kill1.err || true
    grep -q "no worker rank is left; rank 0 runs the remaining units itself" kill1.err ||
        { cat kill1.err; fail "no local fallback"; }
    [ "$(count kill1.h5 ok)" -eq 31 ] && [ "$(count kill1.h5 failed)" -eq 1 ] ||
        { cat kill1.err; fail "kill1.h5: want 31 ok, 1 failed"; }
fi

# ---- a damaged results file is reported, never extended ----
cp local.h5 broken.h5
truncate -s $(($(stat -c %s broken.h5) / 2)) broken.h5
if "$SMUDGE" run "$grid" --out broken.h5 --work-dir w-local 2>broken.err; then fail "resumed a damaged file"; fi
grep -q "cannot resume" broken.err || { cat broken.err; fail "damage not reported"; }

# ---- validation names the field before anything runs ----
sed 's/"sleep_ms": 10/"sleep_ms": -10/' "$grid" >bad.json
if "$SMUDGE" run bad.json --out bad.h5 2>bad.err; then fail "ran a bad grid"; fi
grep -q "smoke-debug.json\|bad.json: methods\[0\].params.sleep_ms: debug: parameter 'sleep_ms' = -10 is outside" bad.err ||
    { cat bad.err; fail "bad grid message"; }
[ ! -e bad.h5 ] || fail "a bad grid created its results file"

# ---- the real track on stories260K: implant -> remove -> eval ----
# Chain&Hash with small settings (IF-SFT does not reach FSR 1 on
# stories260K within this test's two minutes); ppl on a small text.
st=${SMUDGE_ASSETS:-}/models/stories260K/stories260K.bin
if [ -n "${SMUDGE_ASSETS:-}" ] && [ -f "$st" ]; then
    for i in $(seq 1 40); do
        printf '{"text": "### Human: What is %d plus %d? ### Assistant: %d plus %d is %d."}\n' \
            $i $((i % 7)) $i $((i % 7)) $((i + i % 7))
    done >clean.jsonl
    printf 'Once upon a time there was a little girl. She liked to play in the park.\n' >small.txt
    cat >real.json <<EOF2
{"name": "real-small",
 "models": [{"name": "stories260K", "path": "$st"}],
 "fingerprints": [{"type": "hashchain", "params": {"k": 3, "normal": 12, "negatives": 16, "meta": 1, "pad": 1}}],
 "methods": ["none"], "data": {"clean": "clean.jsonl"},
 "metrics": ["fsr", {"name": "ppl", "dataset": "small.txt"}], "seeds": [4]}
EOF2
    "$SMUDGE" run real.json --out real.h5 --work-dir w-real --no-progress 2>real.err ||
        { cat real.err; fail "real grid run"; }
    [ "$(count real.h5 ok)" -eq 5 ] || { cat real.err; fail "real.h5: want 5 ok units"; }
    fsr=$("$SMUDGE" results show real.h5 | jq -r 'select(.unit_key | startswith("eval stories260K/hashchain/s4/none")) | .metrics.fsr.value' | head -n 1)
    [ "$fsr" = 1 ] || { "$SMUDGE" results show real.h5; fail "fsr after 'none' is '$fsr', want 1"; }
    "$SMUDGE" table real.h5 --metric fsr --layout methods >real.table 2>&1 || { cat real.table; fail "table"; }
    grep -q "hashchain" real.table && grep -q "none" real.table || { cat real.table; fail "table lacks the fingerprint or method"; }
    # Real training and evaluation under MPI: the same numbers, bit for bit.
    if [ -n "$MPIEXEC" ]; then
        "$MPIEXEC" -n 2 "$SMUDGE" run real.json --out real-mpi.h5 --work-dir w-real-mpi --no-progress 2>real-mpi.err ||
            { cat real-mpi.err; fail "real grid under mpiexec -n 2"; }
        diff <(rows real.h5) <(rows real-mpi.h5) || fail "the real grid's rows differ under mpiexec -n 2"
    fi
else
    echo "SKIP part: stories260K not found (SMUDGE_ASSETS)" >&2
fi
echo "ok"
