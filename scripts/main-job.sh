#!/usr/bin/env bash
# The main job on the embedded default. Until the grid runner lands, it is
# the runtime's own demonstration: inspect and score the bundled-free random
# model shapes and print the forward benchmark.
set -euo pipefail
smudge=${1:-build/smudge}
"$smudge" bench forward --arch llama --vocab 512 --d-model 128 --layers 4 --heads 4 --ffn 384 --seq 128 --batch 8 --steps 5
