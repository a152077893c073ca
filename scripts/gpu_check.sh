#!/usr/bin/env bash
# One call that checks the whole GPU stack on a machine with an NVIDIA GPU, writing everything it
# measures under OUT_DIR (summary.md is the table; each step's log beside it). About 8 minutes on
# one H200 with 16 cores, most of it the build.
#   1. builds the same configuration as scripts/setup.sh (the torch wheel's LibTorch, its CUDA
#      runtime and NCCL) for this GPU's architecture into BUILD (default build-gpu; reused when
#      present), then stops at once, non-zero, when LibTorch sees no GPU;
#   2. runs every `gpu` test (and the CPU kernel tests of the same build);
#   3. measures: (a) each CUDA kernel against its CPU reference in fp32 and bf16 (the gpu tests'
#      tolerances) and bench_kernels; (b) fused generation on the GPU against the CPU, token for
#      token in fp32, on the toy pair; (c) the demo recipe training on the GPU in bf16, loss
#      falling; (d) the same run with its collectives through NCCL (one rank); (e) fusion of a
#      170-token prompt at the published widths (bench_fuser); (f) a training step at the
#      published shapes (bench_train: random Qwen3-0.6B / Qwen2.5-0.5B, 478M fuser, 4 x 512);
#      (g) C2C against T2T latency per query at the published shapes;
#   4. prints one table and exits non-zero if anything failed.
# Usage: bash scripts/gpu_check.sh OUT_DIR
#   env: BUILD (build-gpu), CUDA_ARCH (from nvidia-smi, else "80;90"), PEAK_TFLOPS (dense bf16 peak
#        of the GPU, default 989 = H100/H200 SXM), C2C_PYTHON (the Python whose torch to build on;
#        default .venv/bin/python, else python3), TOK (Qwen3 tokenizer folder for (g), default
#        ../shared/tokenizers/qwen3)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash scripts/gpu_check.sh OUT_DIR}
BUILD=${BUILD:-build-gpu}
PEAK=${PEAK_TFLOPS:-989}
TOK=${TOK:-../shared/tokenizers/qwen3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.md
start=$(date +%s)
status=0
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }
# record ITEM RESULT DETAIL: one row of the table; RESULT PASS, FAIL, SKIP or INFO.
record() {
  echo "| $1 | $2 | $3 |" >> "$SUMMARY"
  [[ $2 == FAIL ]] && status=1
  echo "   -> $2: $3"
}
finish() {
  step "done (status $status)"
  echo
  cat "$SUMMARY"
  exit "$status"
}
printf '# gpu_check %s\n\n| check | result | figures |\n|---|---|---|\n' "$(date -u +%FT%TZ)" > "$SUMMARY"

step "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 || true
  uname -a; nproc; } | tee "$OUT/env.txt"
if [[ -z ${C2C_PYTHON:-} ]]; then
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' 2>/dev/null; then
    C2C_PYTHON=.venv/bin/python
  elif python3 -c 'import torch' 2>/dev/null; then
    C2C_PYTHON=$(command -v python3)
  fi
fi
export C2C_PYTHON
ARCH=${CUDA_ARCH:-}
if [[ -z $ARCH ]]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  ARCH=${cap:-80;90}
fi
echo "python: ${C2C_PYTHON:-none (setup.sh installs torch into .venv)}; GPU architectures: $ARCH" | tee -a "$OUT/env.txt"

step "build $BUILD (scripts/setup.sh, architectures $ARCH)"
if ! C2C_BUILD_DIR=$BUILD C2C_CMAKE_ARGS="-DC2C_CUDA_ARCHITECTURES=$ARCH ${C2C_CMAKE_ARGS:-}" \
    bash scripts/setup.sh > "$OUT/build.log" 2>&1; then
  tail -30 "$OUT/build.log"
  record build FAIL "scripts/setup.sh failed (log: build.log)"
  finish
fi
grep -E "^-- c2c:" "$OUT/build.log" | tee "$OUT/configure.txt"
record build PASS "$(grep -E 'c2c: LibTorch [0-9]' "$OUT/configure.txt" | sed 's/^-- c2c: //; s/ at .*//')"
C2C=$BUILD/c2c
"$C2C" version | tee "$OUT/version.txt"
ndev=$(sed -n 's/^CUDA devices visible: //p' "$OUT/version.txt")
if [[ ${ndev:-0} -lt 1 ]]; then
  echo "gpu_check: no GPU visible to LibTorch (CUDA devices visible: ${ndev:-?}); the build above is" \
       "done, nothing on a GPU was checked. HINT: run on a machine with an NVIDIA GPU and driver" \
       "(nvidia-smi must list it)"
  record "GPU visible" FAIL "no GPU visible to LibTorch"
  finish
fi
grep -q "CUDA kernels: built" "$OUT/version.txt" || record "CUDA kernels in the build" FAIL "c2c version: not built"

step "gpu tests"
if (cd "$BUILD" && ctest -L gpu --output-on-failure --no-tests=error) > "$OUT/gpu_tests.log" 2>&1; then
  # On a GPU machine a skipped gpu test means the kernels did not reach the device.
  if grep -q "Skipped\|Not Run" "$OUT/gpu_tests.log"; then
    record "(a) gpu tests: kernels vs CPU reference, fp32 and bf16" FAIL "some skipped (gpu_tests.log)"
  else
    record "(a) gpu tests: kernels vs CPU reference, fp32 and bf16" PASS \
      "$(grep -E 'tests passed' "$OUT/gpu_tests.log"); tolerances in tests/kernels/gpu_test_util.h"
  fi
else
  record "(a) gpu tests: kernels vs CPU reference, fp32 and bf16" FAIL "see gpu_tests.log"
fi
# test_modules_fuser also runs the fuser's goldens (every variant) with its tensors on CUDA.
if (cd "$BUILD" && ctest -L cpu -R "test_kernels|test_modules_fuser$|test_modules_fused_pipeline|test_build_linkage" \
      --output-on-failure) > "$OUT/cpu_kernel_tests.log" 2>&1; then
  record "kernel tests, fuser goldens on CPU and CUDA, fused pipeline, linkage" PASS "$(grep -E 'tests passed' "$OUT/cpu_kernel_tests.log")"
else
  record "kernel tests, fuser goldens on CPU and CUDA, fused pipeline, linkage" FAIL "see cpu_kernel_tests.log"
fi
if "$BUILD/bench_kernels" --peak-tflops "$PEAK" > "$OUT/bench_kernels.txt" 2>&1; then
  record "(a) bench_kernels" INFO "bench_kernels.txt"
else
  record "(a) bench_kernels" FAIL "see bench_kernels.txt"
fi

step "(b) fused generation, GPU against CPU, fp32, toy pair"
R=recipes/toy/seed0/receiver S=recipes/toy/seed0/sharer
rm -rf "$OUT/init_fuser"
# An untrained fuser without gates (the demo's projection_fusion): every fused position changes.
if "$C2C" train recipes/demo.yaml --export-init "$OUT/init_fuser" > "$OUT/gen.log" 2>&1; then
  gen() {
    "$C2C" generate --receiver "$R" --sharer "$S" --fuser "$OUT/init_fuser" --chat --json \
      --prompt "Which city does Wendun live in?" --prompt "What is the job of Asla Morrow?" \
      --prompt "Tell me about the pet of Kiro." --max-new-tokens 24 --ignore-eos \
      --device "$1" --dtype float32 > "$OUT/gen_$1.json" 2>> "$OUT/gen.log"
  }
  if gen cpu && gen cuda; then
    same=$(python3 - "$OUT/gen_cpu.json" "$OUT/gen_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
ids = lambda j: [r["generated_ids"] for r in j["rows"]]
x, y = ids(a), ids(b)
print("equal" if x == y else f"differ: cpu {x} cuda {y}")
PY
)
    [[ $same == equal ]] && record "(b) fused generation GPU = CPU (fp32, 3 prompts x 24 tokens)" PASS "token for token" ||
      record "(b) fused generation GPU = CPU (fp32, 3 prompts x 24 tokens)" FAIL "$same"
  else
    record "(b) fused generation GPU = CPU" FAIL "generate failed (gen.log)"
  fi
else
  record "(b) fused generation GPU = CPU" FAIL "export-init failed (gen.log)"
fi

step "(c, d) the demo recipe on the GPU in bf16: plain, then through NCCL"
rm -rf "$OUT/world" "$OUT/data"
"$C2C" toy-world --seed 0 --out "$OUT/world" > "$OUT/data.log" 2>&1 &&
  "$C2C" prepare --input "$OUT/world/fuser_train.jsonl" --receiver-tokenizer "$R" --sharer-tokenizer "$S" \
    --alignment span_tail --max-length 128 --out "$OUT/data" >> "$OUT/data.log" 2>&1 ||
  record "(c) toy data" FAIL "see data.log"
# loss_trend RUN_DIR: "first -> last" over metrics.jsonl, and whether it fell.
loss_trend() {
  python3 - "$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
loss = [r["loss"] for r in rows if not r.get("skipped") and r["loss"] >= 0]
if len(loss) < 2: print("too few steps logged"); sys.exit(1)
tps = [r.get("tokens_per_s") for r in rows if r.get("tokens_per_s")]
print(f"loss {loss[0]:.4f} -> {loss[-1]:.4f} over {rows[-1]['step']} steps" + (f", {tps[-1]:.0f} tokens/s" if tps else ""))
sys.exit(0 if loss[-1] < loss[0] else 1)
PY
}
train_gpu() {  # train_gpu NAME [env...]
  local name=$1; shift
  rm -rf "$OUT/$name"
  env "$@" "$C2C" train recipes/demo.yaml --set train.device=cuda --set train.dtype=bfloat16 \
    --set train.max_steps=60 --set train.log_every=10 --set data.train="$OUT/data" \
    --set checkpoint.dir="$OUT/$name" --set checkpoint.every=60 --set train.eval_every=0 \
    --set train.early_stop_evals=0 --set checkpoint.keep_best=false > "$OUT/$name.log" 2>&1
}
if train_gpu train_bf16 && trend=$(loss_trend "$OUT/train_bf16"); then
  record "(c) demo recipe, GPU, bf16, 60 steps" PASS "$trend"
else
  record "(c) demo recipe, GPU, bf16, 60 steps" FAIL "${trend:-see train_bf16.log}"
fi
trend=""
if train_gpu train_nccl C2C_PROCESS_GROUP=1 WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_PORT=29671 &&
    grep -q "over nccl" "$OUT/train_nccl.log" && trend=$(loss_trend "$OUT/train_nccl"); then
  record "(d) the same as one NCCL rank" PASS "$trend ($(grep -m1 'over nccl' "$OUT/train_nccl.log"))"
else
  record "(d) the same as one NCCL rank" FAIL "${trend:-see train_nccl.log}"
fi

step "(e) fusion of a 170-token prompt at the published widths"
if "$BUILD/bench_fuser" --device cuda --dtype bfloat16 --reps 20 --peak-tflops "$PEAK" > "$OUT/bench_fuser.txt" 2>&1; then
  record "(e) fusion, 170 tokens, 28 layers, bf16" INFO \
    "$(grep -E 'per-layer|batched|speed-up|% of' "$OUT/bench_fuser.txt" | sed 's/^ *//' | paste -sd';' -)"
else
  record "(e) fusion, 170 tokens, 28 layers, bf16" FAIL "see bench_fuser.txt"
fi

step "(f) a training step at the published shapes"
if "$BUILD/bench_train" --receiver-preset qwen3-0.6b --sharer-preset qwen2.5-0.5b --hidden 1024 \
    --batch 4 --prompt 256 --response 256 --device cuda --dtype bfloat16 --repeats 3 \
    --peak-tflops "$PEAK" > "$OUT/bench_train.txt" 2>&1; then
  record "(f) training step, published shapes, 4 x 512, bf16" INFO \
    "$(grep -E 'plain|fuser training|TFLOP|without kernels|ratio' "$OUT/bench_train.txt" | sed 's/^ *//' | paste -sd';' -)"
else
  record "(f) training step, published shapes, 4 x 512, bf16" FAIL "see bench_train.txt"
fi

step "(g) C2C against T2T latency per query at the published shapes"
if [[ -f $TOK/tokenizer.json ]]; then
  if DEVICE=cuda OUT="$OUT/latency" TOK="$TOK" C2C="$C2C" bash scripts/latency_published_shapes.sh 3 \
      > "$OUT/latency.log" 2>&1; then
    record "(g) latency per query, published shapes" INFO "$OUT/latency/eval/report.md"
  else
    record "(g) latency per query, published shapes" FAIL "see latency.log"
  fi
else
  record "(g) latency per query, published shapes" SKIP "needs the Qwen3 tokenizer ($TOK; set TOK=)"
fi
finish
