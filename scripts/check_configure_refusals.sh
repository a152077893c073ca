#!/usr/bin/env bash
# Configure must refuse, with a message naming the path and the fix, a LibTorch it cannot build
# on: a Torch_DIR that is no LibTorch, one older than 2.7, an old-ABI one, and one mixed from two
# prefixes (its CMake files in one folder, its libraries really in another). Each case configures
# a scratch build folder and checks the message. Run by ctest as test_build_configure_refusals.
#   scripts/check_configure_refusals.sh SOURCE_DIR TORCH_PREFIX   (TORCH_PREFIX: site-packages/torch)
set -uo pipefail
SRC=${1:?usage: check_configure_refusals.sh SOURCE_DIR TORCH_PREFIX}
REAL=${2:?usage: check_configure_refusals.sh SOURCE_DIR TORCH_PREFIX}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
# expect NAME TORCH_DIR TEXT...: configure fails and its output holds every TEXT.
expect() {
  local name=$1 dir=$2; shift 2
  local out
  if out=$(cmake -S "$SRC" -B "$T/build-$name" -DTorch_DIR="$dir" -DC2C_TESTS=OFF -DC2C_BENCH=OFF 2>&1); then
    echo "FAIL $name: configure accepted $dir"; fails=$((fails + 1)); return
  fi
  out=$(tr '\n' ' ' <<< "$out" | tr -s ' ')  # CMake wraps messages: compare on one line
  for text in "$@"; do
    if ! grep -qF -- "$text" <<< "$out"; then
      echo "FAIL $name: the message lacks '$text': $(grep -o 'CMake Error.*' <<< "$out" | head -c 600)"
      fails=$((fails + 1)); return
    fi
  done
  echo "ok   $name: $(grep -o 'c2c: .*' <<< "$out" | head -c 200)"
}
# A fake LibTorch prefix whose TorchConfig reports VERSION and flags FLAGS.
fake() {
  local p=$T/$1/torch
  mkdir -p "$p/lib" "$p/share/cmake/Torch"
  touch "$p/lib/libtorch_cpu.so" "$p/lib/libtorch.so" "$p/lib/libc10.so"
  printf 'set(PACKAGE_VERSION "%s")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n' "$2" > "$p/share/cmake/Torch/TorchConfigVersion.cmake"
  printf 'set(TORCH_CXX_FLAGS "%s")\nset(TORCH_LIBRARIES "")\nset(TORCH_INCLUDE_DIRS "")\n' "$3" > "$p/share/cmake/Torch/TorchConfig.cmake"
  echo "$p/share/cmake/Torch"
}
expect not-a-libtorch "$T/nowhere/share/cmake/Torch" "is not the CMake folder of a LibTorch" "HINT"
expect too-old "$(fake old 2.6.0 "")" "LibTorch 2.6.0" "older than 2.7" "HINT"
expect old-abi "$(fake abi 2.8.0 "-D_GLIBCXX_USE_CXX11_ABI=0")" "old pre-C++11 ABI" "HINT"
# Mixed: the CMake files of one prefix, the libraries of another (symbolic links to the wheel's).
M=$T/mixed/torch
mkdir -p "$M/lib" "$M/share/cmake"
ln -s "$REAL/share/cmake/Torch" "$M/share/cmake/Torch"
ln -s "$REAL/share/cmake/Caffe2" "$M/share/cmake/Caffe2"
for f in "$REAL"/lib/*.so; do ln -s "$f" "$M/lib/"; done
[[ -f $REAL/version.py ]] && ln -s "$REAL/version.py" "$M/version.py"
ln -s "$(cd "$REAL/.." && pwd)/nvidia" "$T/mixed/nvidia" 2>/dev/null
expect mixed "$M/share/cmake/Torch" "mixed LibTorch" "is not under $M" "HINT"
(( fails == 0 )) && echo "all refusals hold" || exit 1
