#!/usr/bin/env bash
# One world seed end to end, with one command: the world and the pair pretrained from scratch
# (scripts/make_toy_world.sh, which ends with the world's check: receiver, sharer and T2T alone,
# and the probe of the sharer's cache),
# then the C2C fusers of the README's seed table (the demo recipe, span_tail alignment, the
# gate-free projection_fusion and the method itself, full with its Gumbel gates, 2,000 steps at
# most, best/ chosen on the validation people; scripts/toy_fuser.sh) and their table.
#
#   bash scripts/toy_seed.sh SEED [ENTITIES]
#
# For 600 people: ~20 minutes of pretraining on 2 cores with nothing else running, then the
# check, then the two fusers side by side (one core each; 2,000 steps at most).
# Outputs in runs/toy-$SEED. Environment: STEPS (fuser steps, default 2000), ALIGN (default
# span_tail), VARIANTS (default "projection_fusion full"; "full projection_fusion projection" for
# the whole ablation ladder, two at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:?usage: bash scripts/toy_seed.sh SEED [ENTITIES]}
ENTITIES=${2:-600}
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "toy_seed: SEED must be a non-negative integer, got '$SEED'"; exit 1; }
[[ "$ENTITIES" =~ ^[0-9]+$ ]] && [ "$ENTITIES" -ge 24 ] || {
  echo "toy_seed: ENTITIES must be an integer >= 24, got '$ENTITIES'"; exit 1; }
OUT=runs/toy-$SEED
if [ -f "$OUT/world/world.json" ]; then
  have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["entities"])' "$OUT/world/world.json")
  [ "$have" = "$ENTITIES" ] || {
    echo "toy_seed: $OUT/world holds a world of $have people, not $ENTITIES; move $OUT away or pass $have"
    exit 1; }
fi
if [ -f "recipes/toy/seed$SEED/receiver/model.safetensors" ]; then
  echo "toy_seed: seed $SEED's pair is shipped in recipes/toy/seed$SEED; skipping pretraining"
else
  # Pretrains what runs/toy-$SEED does not hold yet (a model made before is reused), then the
  # world's check, which stops here unless the world is valid.
  bash scripts/make_toy_world.sh "$SEED" "$ENTITIES"
fi
read -r -a variants <<< "${VARIANTS:-projection_fusion full}"
ALIGN=${ALIGN:-span_tail} STEPS=${STEPS:-2000} ENTITIES=$ENTITIES \
  bash scripts/toy_fuser.sh "$SEED" "${variants[@]}"
