#!/usr/bin/env bash
# Sets up (apt + build, as scripts/setup.sh) and runs the default test set: every test labelled
# `cpu`, and the `gpu` ones, which ctest lists as skipped where no device is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest -L "cpu|gpu" --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" "$@"
