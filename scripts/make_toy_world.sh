#!/usr/bin/env bash
# Makes the toy world's pair from scratch for one seed: the world (`c2c toy-world`), then the
# sharer and the receiver pretrained by `c2c pretrain` (both at once, one core each), then a
# check of the world (receiver / sharer / T2T alone on every split) that fails the script when
# the receiver misses 95% on its known people or is above chance + 15 points on the others, or
# the sharer misses 95% anywhere (scripts/check_toy_world.py). The pair of seed 0 is
# shipped in recipes/toy/seed0 (copied there with --ship), so the demo does not pretrain.
#
#   bash scripts/make_toy_world.sh [SEED] [ENTITIES] [--ship]
#
# About 45 minutes on 2 cores (the sharer, 600 entities, is the long one). The tokenizers in
# recipes/toy/*_tokenizer are fixed (scripts/make_toy_tokenizers.py made them once).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-0}
ENTITIES=${2:-600}
SHIP=${3:-}
OUT=runs/toy-$SEED
C2C=build/c2c
[ -x "$C2C" ] || { echo "make_toy_world: build first (bash scripts/setup.sh)"; exit 1; }
mkdir -p "$OUT"
$C2C toy-world --seed "$SEED" --entities "$ENTITIES" --known $((ENTITIES / 4)) --eval $((ENTITIES / 6)) --out "$OUT/world"

# Sharer: every entity. Two stages (the second continues the first with a fresh schedule): this
# is how the shipped seed-0 sharer was made; one 4000-step stage left it at ~17% recall.
sharer() {
  OMP_NUM_THREADS=1 $C2C pretrain --config recipes/toy/sharer_config.json --tokenizer recipes/toy/sharer_tokenizer \
    --data "$OUT/world/sharer_corpus.jsonl" --out "$OUT/sharer_stage1" --steps 4000 --batch-size 32 \
    --lr 3e-3 --warmup-ratio 0.05 --seed "$SEED" --log-every 100
  OMP_NUM_THREADS=1 $C2C pretrain --init "$OUT/sharer_stage1" --tokenizer "$OUT/sharer_stage1" \
    --data "$OUT/world/sharer_corpus.jsonl" --out "$OUT/sharer" --steps 6000 --batch-size 32 \
    --lr 2e-3 --warmup-ratio 0.02 --seed $((SEED + 1)) --log-every 100
}
# Receiver: the known quarter, and read-the-context practice on fresh entities.
receiver() {
  OMP_NUM_THREADS=1 $C2C pretrain --config recipes/toy/receiver_config.json --tokenizer recipes/toy/receiver_tokenizer \
    --data "$OUT/world/receiver_corpus.jsonl" --out "$OUT/receiver" --steps 3000 --batch-size 32 \
    --lr 3e-3 --warmup-ratio 0.05 --seed "$SEED" --log-every 100
}
sharer > "$OUT/sharer.log" 2>&1 &
S=$!
receiver > "$OUT/receiver.log" 2>&1 &
R=$!
echo "make_toy_world: pretraining (logs: $OUT/sharer.log, $OUT/receiver.log)"
wait $R || { echo "receiver pretraining failed: see $OUT/receiver.log"; exit 1; }
wait $S || { echo "sharer pretraining failed: see $OUT/sharer.log"; exit 1; }

cat > "$OUT/check.yaml" <<YAML
receiver: $OUT/receiver
sharers: [$OUT/sharer]
methods: [receiver, sharer, t2t]
mode: choices
benchmarks:
  - {name: heldout, file: $OUT/world/eval_heldout.jsonl}
  - {name: known, file: $OUT/world/eval_known.jsonl}
  - {name: fuser_train, file: $OUT/world/eval_fuser_train.jsonl}
batch_size: 32
t2t_max_new_tokens: 48
latency_queries: 0
output: $OUT/check
YAML
rm -rf "$OUT/check"
$C2C eval --config "$OUT/check.yaml"
# The world's check (scripts/check_toy_world.py): stops here, naming each threshold missed and by
# how much, before the pair is shipped or any fuser is trained on it.
python3 scripts/check_toy_world.py "$OUT/check/report.json" "$OUT/world" || {
  echo "make_toy_world: seed $SEED's world fails its check (above); stopping before any fuser is trained"
  exit 1; }
if [ "$SHIP" = "--ship" ]; then
  for m in receiver sharer; do
    mkdir -p "recipes/toy/seed$SEED/$m"
    cp "$OUT/$m"/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json} "recipes/toy/seed$SEED/$m/"
  done
  echo "make_toy_world: shipped in recipes/toy/seed$SEED"
fi
