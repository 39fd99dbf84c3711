#!/usr/bin/env bash
# Side-by-side benchmark: smudge, the PyTorch peer and the cblas_sgemm
# ceiling in one run, printed as ratios (the machines are shared and noisy,
# so only ratios from one run mean anything). Never fails on a timing.
#
#   bash bench/run.sh [build/smudge]        THREADS=2 STEPS=... to change
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
smudge=${1:-$here/../build/smudge}
threads=${THREADS:-2}
# PyTorch at its best here: Debian's torch on the OpenMP build of OpenBLAS
# (one OpenMP pool instead of two fighting ones), set_num_threads(threads).
omp_blas=/usr/lib/$(gcc -print-multiarch)/openblas-openmp
have_torch=0
if LD_LIBRARY_PATH=$omp_blas /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads=$threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
ceiling=$("$smudge" bench sgemm --m 512 --n 768 --k 768 --steps 50 --threads "$threads")
echo "sgemm ceiling: $ceiling"

run() { # bench-kind steps shape...
  local kind=$1 steps=$2; shift 2
  local ours peer
  ours=$("$smudge" bench "$kind" "$@" --steps "$steps" --threads "$threads")
  echo "  smudge: $ours"
  if [ $have_torch = 0 ]; then echo "  torch: not available (apt-get install python3-torch)"; return; fi
  peer=$(LD_LIBRARY_PATH=$omp_blas OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/peer_torch.py" "$kind" "$@" --steps "$steps" --threads "$threads")
  echo "  torch:  $peer"
  /usr/bin/python3 - "$ours" "$peer" "$ceiling" <<'PY'
import json, sys
o, p, c = (json.loads(s) for s in sys.argv[1:4])
line = f"  ratio smudge/torch tokens/s: {o['tokens_per_s'] / p['tokens_per_s']:.2f}"
if 'gflops' in o and 'gflops' in p:
    line += f"   GFLOP/s vs sgemm ceiling: smudge {o['gflops'] / c['gflops']:.2f}, torch {p['gflops'] / c['gflops']:.2f}"
print(line)
PY
}

echo "forward, GPT-2-124M shape (vocab 50257, d 768, 12 layers, 12 heads, seq 128, batch 4):"
run forward ${STEPS:-5} --arch gpt2 --vocab 50257 --d-model 768 --layers 12 --heads 12 --ffn 3072 --seq 128 --batch 4
echo "train step, Llama vocab 512, d 128, 4 layers, 4 heads, SwiGLU 384, seq 128, batch 8:"
run train ${STEPS:-20} --arch llama --vocab 512 --d-model 128 --layers 4 --heads 4 --ffn 384 --seq 128 --batch 8
echo "train step, Llama vocab 4096, d 256, 6 layers, 8 heads, SwiGLU 704, seq 256, batch 8:"
run train ${STEPS:-5} --arch llama --vocab 4096 --d-model 256 --layers 6 --heads 8 --ffn 704 --seq 256 --batch 8
echo "greedy KV-cache decoding, batch 1, 128 new tokens, the second Llama shape:"
run generate 1 --arch llama --vocab 4096 --d-model 256 --layers 6 --heads 8 --ffn 704 --seq 256 --batch 1 --new-tokens 128
