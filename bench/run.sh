#!/usr/bin/env bash
# Side-by-side benchmark: smudge, the PyTorch peer and the cblas_sgemm
# ceiling in one run, printed as ratios (the machines are shared and noisy,
# so only ratios from one run mean anything). Never fails on a timing.
#
#   bash bench/run.sh [build/smudge]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
smudge=${1:-$here/../build/smudge}
threads=${THREADS:-2}
# PyTorch at its best here: Debian's torch on the OpenMP build of OpenBLAS.
omp_blas=/usr/lib/$(gcc -print-multiarch)/openblas-openmp
have_torch=0
if LD_LIBRARY_PATH=$omp_blas /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi

shape_gpt2="--arch gpt2 --vocab 50257 --d-model 768 --layers 12 --heads 12 --ffn 3072 --seq 128 --batch 4"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads=$threads"
ceiling=$("$smudge" bench sgemm --m 512 --n 768 --k 768 --steps 50 --threads "$threads")
echo "sgemm ceiling: $ceiling"
for shape in "$shape_gpt2"; do
  ours=$("$smudge" bench forward $shape --steps 5 --threads "$threads")
  echo "smudge: $ours"
  if [ $have_torch = 1 ]; then
    peer=$(LD_LIBRARY_PATH=$omp_blas OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/peer_torch.py" forward $shape --steps 5 --threads "$threads")
    echo "torch:  $peer"
    /usr/bin/python3 - "$ours" "$peer" "$ceiling" <<'PY'
import json, sys
o, p, c = (json.loads(s) for s in sys.argv[1:4])
print(f"ratio smudge/torch tokens/s: {o['tokens_per_s'] / p['tokens_per_s']:.2f}   "
      f"smudge GFLOP/s / sgemm ceiling: {o['gflops'] / c['gflops']:.2f}   "
      f"torch GFLOP/s / ceiling: {p['gflops'] / c['gflops']:.2f}")
PY
  else
    echo "torch: not available (apt-get install python3-torch)"
  fi
done
