#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   bash scripts/bootstrap.sh run    install what is missing, build, run the main job
#   bash scripts/bootstrap.sh test   install what is missing, build, run every test
# Both are idempotent: a second call installs nothing and rebuilds only what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
mode=${1:-}
case "$mode" in
  run|test) ;;
  *) echo "usage: bash scripts/bootstrap.sh run|test" >&2; exit 2 ;;
esac

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# Debian packages the build, the tests and the benchmarks need.
packages=(
  build-essential cmake pkg-config
  libopenblas-dev libopenblas0-openmp
  libcjson-dev libssl-dev
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  python3 python3-numpy
)
if [ "$mode" = test ]; then
  packages+=(clang libclang-rt-14-dev libomp-dev python3-sentencepiece python3-torch slurm-wlm munge
             python3-h5py jq)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

jobs=$(nproc)
log "building (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >&2

if [ "$mode" = run ]; then
  exec bash scripts/main-job.sh build/smudge
fi

# test: the release build's whole suite, then the unit tests and corpus
# replays again under AddressSanitizer + UBSan (with clang), then the
# libFuzzer targets are built and each runs briefly so they cannot rot.
log "running the test suite"
ctest --test-dir build --output-on-failure -j"$jobs"
log "building with AddressSanitizer + UBSan in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DSMUDGE_SANITIZE=ON -DSMUDGE_NATIVE=ON >/dev/null
cmake --build build-asan -j"$jobs" >&2
log "running unit tests under the sanitizers"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
log "building the libFuzzer targets in build-fuzz/ and running each for ${FUZZ_SECONDS:=20} s"
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DSMUDGE_FUZZ=ON >/dev/null
targets=$(for s in fuzz/fuzz_*.c; do basename "$s" .c; done)
cmake --build build-fuzz -j"$jobs" --target $targets >&2
for t in $targets; do
  f=build-fuzz/fuzz/$t
  name=$(basename "$f"); corpus=fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d)
  "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 "$work" "$corpus" \
    > "$work.log" 2>&1 || { tail -40 "$work.log" >&2; echo "fuzz target $name found a crash" >&2; exit 1; }
  rm -rf "$work" "$work.log"
done
log "all tests passed"
