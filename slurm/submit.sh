#!/bin/bash
# Submits the grid @NAME@: one job array per DAG stage, each starting after
# the previous stage's arrays have ended (afterany, so failed tasks never
# block the grid: their dependents are recorded as skipped), then the merge
# job. Written by `smudge slurm` from slurm/submit.sh.
set -euo pipefail
cd @OUT_DIR@
mkdir -p logs shards
dep=""
submit() {
    sbatch --parsable ${dep:+--dependency=afterany:$dep} "$@" | cut -d';' -f1
}
@SUBMIT_LINES@
merge=$(submit merge.sbatch)
echo "merge: $merge"
