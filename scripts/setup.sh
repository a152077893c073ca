#!/usr/bin/env bash
# Installs every system dependency with apt (Debian 12) and builds the project into build/.
#   bash scripts/setup.sh            # dependencies + Release build of build/c2c, tests, benchmarks
#   C2C_SKIP_APT=1 bash scripts/setup.sh   # build only
#   C2C_CMAKE_ARGS="-DC2C_CUDA=OFF" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev          # LibTorch 1.13 (CPU)
  libopenblas0-pthread  # without it LibTorch multiplies through the reference BLAS (~13x slower)
  libgloo-dev           # headers of c10d's Gloo process group (distributed training on CPUs)
  libhdf5-dev libyaml-cpp-dev nlohmann-json3-dev libpcre2-dev
  libgtest-dev libgmock-dev
)

if [ "${C2C_SKIP_APT:-0}" != "1" ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# nvcc lives outside PATH in CUDA's usual install folder; C2C_CUDA turns on when it is found.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${C2C_CMAKE_ARGS:-}
cmake --build build -j"$jobs"
echo "setup: built build/c2c"
