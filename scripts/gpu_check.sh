#!/usr/bin/env bash
# GPU check of the fused kernels, for a machine with an NVIDIA GPU and PyTorch 2.x (CUDA) installed:
# configures build-gpu against the LibTorch inside that PyTorch, builds the kernel tests and the
# benchmark, runs the `gpu`-labelled tests, then prints bench_kernels. Budget: ~8 minutes
# (one architecture, only the targets needed, all cores).
# Usage: scripts/gpu_check.sh [build folder, default build-gpu]   (env: CUDA_ARCH, default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
ARCH=${CUDA_ARCH:-90}
JOBS=$(nproc)
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
NVCC=$(command -v nvcc || true)
for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [[ -z "$NVCC" && -x $c ]] && NVCC=$c; done
[[ -n "$NVCC" ]] || { echo "gpu_check: nvcc not found; HINT: install the CUDA toolkit matching torch.version.cuda"; exit 1; }
echo "nvcc: $NVCC ($("$NVCC" --version | tail -1))"

step "system packages (only the missing ones)"
need=()
pkg-config --exists libpcre2-8 || need+=(libpcre2-dev)
[[ -e /usr/include/yaml-cpp/yaml.h ]] || need+=(libyaml-cpp-dev)
[[ -e /usr/include/hdf5/serial/H5Cpp.h || -e /usr/include/H5Cpp.h ]] || need+=(libhdf5-dev)
[[ -e /usr/include/gtest/gtest.h ]] || need+=(libgtest-dev)
[[ -e /usr/include/nlohmann/json.hpp ]] || need+=(nlohmann-json3-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cmake >/dev/null || need+=(cmake)
if (( ${#need[@]} )); then
  echo "installing: ${need[*]}"
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" ||
    { echo "gpu_check: could not install ${need[*]}; HINT: install them by hand"; exit 1; }
fi

step "configure $BUILD against $TORCH_PREFIX/Torch"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DC2C_CUDA=ON \
  -DTorch_DIR="$TORCH_PREFIX/Torch" -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DC2C_CUDA_ARCHITECTURES="$ARCH" \
  -DCAFFE2_USE_CUDNN=OFF > "$BUILD.configure.log" 2>&1 ||
  { tail -40 "$BUILD.configure.log"; echo "gpu_check: configure failed (log: $BUILD.configure.log)"; exit 1; }
grep -E "^-- c2c:" "$BUILD.configure.log"
grep -q "LibTorch CUDA bindings" "$BUILD.configure.log" ||
  { echo "gpu_check: the kernels would not reach CUDA tensors (no CUDA LibTorch found); the GPU tests would only skip"; exit 1; }

step "build"
targets=(test_kernels_rms_norm_gpu test_kernels_gated_combine_gpu test_kernels_gelu_residual_gpu
         test_kernels_rms_norm test_kernels_gated_combine test_kernels_gelu_residual bench_kernels)
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"

step "gpu tests"
status=0
(cd "$BUILD" && ctest -L gpu -R test_kernels --output-on-failure) || status=1
step "cpu kernel tests (same build)"
(cd "$BUILD" && ctest -L cpu -R test_kernels --output-on-failure) || status=1

step "benchmark"
"$BUILD/bench_kernels" --peak-tflops "${PEAK_TFLOPS:-989}" || status=1
step "done (status $status)"
exit $status
