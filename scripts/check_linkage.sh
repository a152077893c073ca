#!/usr/bin/env bash
# Fails if a built program would load LibTorch, a CUDA library or NCCL from anywhere but the one
# PyTorch wheel it was built against (a system CUDA toolkit's libcudart / libnccl shadowing the
# wheel's was the first GPU build's link failure). Checks `build/c2c` and every test_* / bench_*
# program: each such library must resolve (ldd) under the wheel's site-packages, no RUNPATH may
# name a CUDA toolkit folder, and no program may load a second BLAS or OpenMP runtime (OpenBLAS,
# reference BLAS/LAPACK, BLIS, Intel's or LLVM's OpenMP). Run by ctest as test_build_linkage.
#   scripts/check_linkage.sh BUILD_DIR TORCH_PREFIX      (TORCH_PREFIX: site-packages/torch)
set -euo pipefail
BUILD=${1:?usage: check_linkage.sh BUILD_DIR TORCH_PREFIX}
TORCH_PREFIX=${2:?usage: check_linkage.sh BUILD_DIR TORCH_PREFIX}
SITE=$(realpath "$TORCH_PREFIX/..")
# LibTorch's own libraries and the CUDA / NCCL ones it or the kernels load.
PATTERN='^(libtorch[a-z_]*|libc10[a-z_]*|libcudart|libnccl|libcublas(Lt)?|libcudnn[a-z_]*|libcusparse(Lt)?|libcufft|libcufile|libcurand|libcusolver|libnvrtc|libnvJitLink|libnvshmem[a-z_]*|libcupti)\.so'
# BLAS / OpenMP libraries that are not the wheel's own (MKL is linked into libtorch_cpu).
SECOND_POOL='^(libopenblas[a-z0-9_]*|libblas|liblapack|libblis[a-z0-9_]*|libiomp5|libomp)\.so'
checked=0 bad=0 libs=0
for bin in "$BUILD"/c2c "$BUILD"/test_* "$BUILD"/bench_* "$BUILD"/tests/test_*; do
  [[ -f $bin && -x $bin ]] || continue
  head -c 4 "$bin" | grep -q ELF || continue
  checked=$((checked + 1))
  if readelf -d "$bin" | grep -E 'R(UN)?PATH' | grep -qE '/cuda[^/]*/|/usr/local/cuda'; then
    echo "FAIL $bin: its RUNPATH names a CUDA toolkit folder: $(readelf -d "$bin" | grep -E 'R(UN)?PATH')"
    bad=$((bad + 1))
  fi
  while read -r name arrow path _; do
    # One thread pool: the wheel's MKL runs on LibTorch's OpenMP threads (its libgomp); a second
    # BLAS or OpenMP runtime would bring a second pool that fights it (the CPU-speed issue).
    if [[ $name =~ $SECOND_POOL ]]; then
      echo "FAIL $bin: loads $name ($path), a second BLAS or OpenMP runtime beside the wheel's"
      bad=$((bad + 1))
      continue
    fi
    [[ $name =~ $PATTERN ]] || continue
    libs=$((libs + 1))
    if [[ $arrow != "=>" || $path == "not" ]]; then
      echo "FAIL $bin: $name is not found"
      bad=$((bad + 1))
      continue
    fi
    real=$(realpath "$path")
    if [[ $real != "$SITE"/* ]]; then
      echo "FAIL $bin: $name loads from $real, outside the wheel ($SITE)"
      bad=$((bad + 1))
    fi
  done < <(ldd "$bin")
done
if (( checked == 0 )); then
  echo "FAIL: no programs under $BUILD to check"
  exit 1
fi
if (( libs == 0 )); then
  echo "FAIL: none of the $checked programs loads LibTorch: the pattern or the build is wrong"
  exit 1
fi
echo "checked $checked programs, $libs LibTorch/CUDA/NCCL libraries: $bad outside $SITE"
(( bad == 0 ))
