#!/usr/bin/env bash
# Local data-parallel launch: scripts/launch_local.sh N c2c train recipe.yaml [--set k=v ...]
# Starts N ranks of the given command on this host (Gloo over 127.0.0.1); rank 0 logs.
set -euo pipefail
n=${1:?usage: launch_local.sh NUM_RANKS COMMAND...}; shift
export MASTER_ADDR=${MASTER_ADDR:-127.0.0.1} MASTER_PORT=${MASTER_PORT:-29500} WORLD_SIZE=$n
pids=()
for ((r = 0; r < n; r++)); do RANK=$r LOCAL_RANK=$r "$@" & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
