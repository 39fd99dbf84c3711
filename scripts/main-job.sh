#!/usr/bin/env bash
# The main job on the embedded default: build the tiny model zoo (cached
# after the first run), run the default grid (every zoo model x fingerprint
# x removal method; resumable, so an interrupted run picks up where it
# stopped) and print the leaderboard in both of the MEraser paper's layouts.
set -euo pipefail
smudge=${1:-build/smudge}
out=${SMUDGE_RESULTS:-results.h5}
# One OpenMP thread per unit and as many units at once as cores: tiny
# models gain more from running side by side than from threads.
"$smudge" run --out "$out" --jobs "$(nproc)"
echo
"$smudge" table "$out" --metric fsr --layout stages --format md
echo
"$smudge" table "$out" --metric fsr --layout methods --format md
echo
"$smudge" table "$out" --metric ppl --layout methods --format md
