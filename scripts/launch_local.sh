#!/usr/bin/env bash
# Local data-parallel launch: scripts/launch_local.sh N c2c train recipe.yaml [--set k=v ...]
# Starts N ranks of the given command on this host (Gloo over 127.0.0.1); rank 0 logs.
# MASTER_PORT (default 29500) must be free. A rank that dies makes the others fail within a few
# seconds, naming it ("rank 1 is lost"); this script reports each failed rank and exits with the
# first non-zero status. Ctrl-C stops every rank.
set -euo pipefail
n=${1:?usage: launch_local.sh NUM_RANKS COMMAND...}; shift
# LOCAL_WORLD_SIZE: train.threads = 0 gives each rank its share of the cores.
export MASTER_ADDR=${MASTER_ADDR:-127.0.0.1} MASTER_PORT=${MASTER_PORT:-29500} WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n
pids=()
declare -A rank_of
for ((r = 0; r < n; r++)); do
  RANK=$r LOCAL_RANK=$r "$@" &
  pids+=($!)
  rank_of[$!]=$r
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
rc=0
while ((${#rank_of[@]} > 0)); do
  st=0
  wait -n -p done_pid "${!rank_of[@]}" || st=$?
  if ((st != 0)); then
    echo "launch_local.sh: rank ${rank_of[$done_pid]:-?} exited with status $st" >&2
    ((rc != 0)) || rc=$st
  fi
  unset "rank_of[$done_pid]"
done
exit $rc
