#!/usr/bin/env bash
# Dispatch overhead of the grid runner: ~10,000 trivial debug units on 32
# MPI ranks (1 coordinator + 31 workers) oversubscribed on this machine's
# cores, each unit in its own forked child writing its artifact.
#
#   bash bench/dispatch.sh [build/smudge]      UNITS=10000 RANKS=32 STORE=1
#
# Two runs: the runner alone (rows counted, not written), then (STORE=1,
# the default) the same with every row appended and flushed to an HDF5
# results file as `smudge run` does. Each prints units/s, and rank0_cpu_seconds
# shows how busy the coordinator itself was. The work dir is on /dev/shm
# when it exists, so the file system's inode allocation does not dominate.
# A benchmark prints figures; it never fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
smudge=${1:-$here/../build/smudge}
units=${UNITS:-10000}
ranks=${RANKS:-32}
cores=$(nproc --all)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
dir=$(mktemp -d "$base/smudge-dispatch.XXXXXX")
trap 'rm -rf "$dir"' EXIT
echo "machine: $cores cores, load $(cut -d' ' -f1-3 /proc/loadavg); $ranks ranks, ~$units units, work dir on $base"
echo "runner alone:"
mpiexec --enable-recovery -n "$ranks" "$smudge" bench dispatch --units "$units" \
    --work-dir "$dir/w1" 2>"$dir/err1" || { cat "$dir/err1"; exit 0; }
if [ "${STORE:-1}" = 1 ]; then
    echo "with the HDF5 results file (one flushed append per unit):"
    mpiexec --enable-recovery -n "$ranks" "$smudge" bench dispatch --units "$units" \
        --work-dir "$dir/w2" --store "$dir/results.h5" 2>"$dir/err2" || { cat "$dir/err2"; exit 0; }
    grep "results:" "$dir/err2" | sed 's/^smudge run: /  /'
fi
