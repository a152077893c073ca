#!/usr/bin/env bash
# Installs what the build needs and builds the project into build/:
#   - Debian packages (apt): compilers, CMake, HDF5, yaml-cpp, nlohmann-json, PCRE2, GoogleTest,
#     the Gloo headers that c10d's Gloo process group needs (the torch wheel does not ship them);
#   - LibTorch: PyTorch from PyPI in a project-local virtual environment (.venv, ignored by git),
#     the CUDA build with its own CUDA runtime, NCCL, BLAS and OpenMP; the build links that and
#     nothing else of CUDA (cmake/C2CTorch.cmake); and matplotlib there, for the demo's charts.
#   bash scripts/setup.sh                      # everything, then a Release build
#   C2C_SKIP_APT=1 bash scripts/setup.sh       # no apt
#   C2C_PYTHON=/path/to/python bash scripts/setup.sh   # build against that Python's torch instead
#   C2C_TORCH_SPEC='torch==2.15.0' (default) picks the wheel installed into .venv
#   C2C_CMAKE_ARGS="-DC2C_CUDA=OFF" bash scripts/setup.sh
#   C2C_BUILD_DIR=build-gpu bash scripts/setup.sh   # another build folder (default build)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libgloo-dev           # headers of c10d's Gloo process group (distributed training on CPUs)
  libhdf5-dev libyaml-cpp-dev nlohmann-json3-dev libpcre2-dev
  libgtest-dev libgmock-dev
)
# The tested wheel; any torch >= 2.7 (C++11 ABI) builds, older ones are refused at configure.
TORCH_SPEC=${C2C_TORCH_SPEC:-torch==2.15.0}

if [ "${C2C_SKIP_APT:-0}" != "1" ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Debian's own python3 needs python3-venv for .venv; a Python from elsewhere (pyenv) has it.
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if dpkg-query -W -f='${Status}' libtorch-dev 2>/dev/null | grep -q "install ok installed"; then
    echo "setup: note: Debian's libtorch-dev (LibTorch 1.13) is installed; the build ignores it and" \
         "uses the wheel's LibTorch (apt-get remove libtorch-dev to be rid of it)"
  fi
fi

if [ -n "${C2C_PYTHON:-}" ]; then
  PY=$C2C_PYTHON
else
  PY=.venv/bin/python
  if [ ! -x "$PY" ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
  fi
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "setup: pip install $TORCH_SPEC into .venv (about 3 GB with its CUDA wheels)"
    "$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
    # An install that was interrupted earlier leaves packages pip counts as installed but that
    # do not import (a missing CUDA library): reinstall them once.
    if ! "$PY" -c 'import torch' 2>/dev/null; then
      echo "setup: torch does not import from .venv (an interrupted install?); reinstalling it"
      "$PY" -m pip install -q --disable-pip-version-check --force-reinstall "$TORCH_SPEC"
    fi
  fi
fi
"$PY" -c 'import torch' 2>/dev/null ||
  { echo "setup: $PY cannot import torch; HINT: $PY -m pip install '$TORCH_SPEC'"; exit 1; }
# The demo's charts (scripts/plot_eval.py, scripts/plot_metrics.py) run on this Python too.
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  echo "setup: pip install matplotlib (the demo's charts)"
  "$PY" -m pip install -q --disable-pip-version-check matplotlib ||
    echo "setup: warning: matplotlib did not install into $PY; the demo will not draw its charts" \
         "(HINT: $PY -m pip install matplotlib)"
fi
TORCH_INFO=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda or "none")' 2>/dev/null)
echo "setup: LibTorch from $PY: torch $TORCH_INFO"

# nvcc lives outside PATH in CUDA's usual install folder; C2C_CUDA turns on when it is found.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

BUILD=${C2C_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DC2C_PYTHON="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ${C2C_CMAKE_ARGS:-}
cmake --build "$BUILD" -j"$jobs"
echo "setup: built $BUILD/c2c against torch $TORCH_INFO (recorded in $BUILD/torch_build_info.txt)"
