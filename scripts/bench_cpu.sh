#!/usr/bin/env bash
# The CPU figures of the README, re-taken on the current build: bench_llm (prefill / decode of a
# ~25M random Qwen3-style model), bench_fuser (fusion of a 170-token prompt at the published widths,
# per-layer loop against the stacked batched pass and this machine's plain GEMM rate), bench_train
# (fuser training step against a plain receiver forward+backward, with and without the kernels)
# and bench_kernels (each kernel op, CPU reference against LibTorch ops, and the StackedFuser on
# every op path), each at 1 and at 2 threads, interleaved so that both thread
# counts see the same machine state. Output: runs/bench/<bench>-<threads>t.txt and a summary.
#   bash scripts/bench_cpu.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=runs/bench
mkdir -p "$OUT"
for t in 1 2; do
  OMP_NUM_THREADS=$t "$BUILD/bench_llm" --preset bench-25m > "$OUT/llm-${t}t.txt"
done
for t in 1 2; do
  OMP_NUM_THREADS=$t "$BUILD/bench_fuser" --reps 3 > "$OUT/fuser-${t}t.txt"
done
for t in 1 2; do
  OMP_NUM_THREADS=$t "$BUILD/bench_train" > "$OUT/train-${t}t.txt"
done
for t in 1 2; do
  OMP_NUM_THREADS=$t "$BUILD/bench_kernels" --device cpu --threads $t > "$OUT/kernels-${t}t.txt"
done
for f in "$OUT"/llm-*t.txt "$OUT"/fuser-*t.txt "$OUT"/train-*t.txt "$OUT"/kernels-*t.txt; do
  echo "== $f"
  cat "$f"
done
