#!/usr/bin/env bash
# Sets up (apt + build, as scripts/setup.sh) and runs the default test set: every test labelled
# `cpu`. GPU tests are labelled `gpu` and skip themselves without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest -L cpu --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" "$@"
