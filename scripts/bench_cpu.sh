#!/usr/bin/env bash
# The CPU figures of the README, re-taken on the current build: bench_llm (prefill / decode of a
# ~25M random Qwen3-style model), bench_fuser (fusion of a 170-token prompt at the published widths,
# per-layer loop against the stacked batched pass and this machine's plain GEMM rate), bench_train
# (fuser training step against a plain receiver forward+backward, with and without the kernels)
# and bench_kernels (each kernel op, CPU reference against LibTorch ops, and the StackedFuser on
# every op path), each at 1 and at 2 threads: bench_llm and bench_train interleave the two thread
# counts in one run (--threads 1,2) and print the speed-ups; bench_train also runs once with
# glibc's default of returning freed memory (--keep-freed-memory 0) for the page-fault figure.
# About 8 minutes on 2 cores. Output: runs/bench/*.txt and their concatenation on stdout.
#   bash scripts/bench_cpu.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=runs/bench
mkdir -p "$OUT"
"$BUILD/bench_llm" --preset bench-25m --threads 1,2 --repeats 5 > "$OUT/llm.txt"
"$BUILD/bench_train" --threads 1,2 --repeats 5 > "$OUT/train.txt"
"$BUILD/bench_train" --threads 1,2 --repeats 2 --only-fused 1 --keep-freed-memory 0 > "$OUT/train-glibc-default.txt"
for t in 1 2; do
  "$BUILD/bench_fuser" --reps 5 --threads $t > "$OUT/fuser-${t}t.txt"
done
for t in 1 2; do
  "$BUILD/bench_kernels" --device cpu --threads $t > "$OUT/kernels-${t}t.txt"
done
for f in "$OUT"/llm.txt "$OUT"/train.txt "$OUT"/train-glibc-default.txt "$OUT"/fuser-*t.txt "$OUT"/kernels-*t.txt; do
  echo "== $f"
  cat "$f"
done
