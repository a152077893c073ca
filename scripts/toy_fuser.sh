#!/usr/bin/env bash
# Trains and evaluates fusers in the toy world of one seed: the ablation ladder of the paper
# (projection only, projection + fusion, full C2C with gates) or any subset of it, with one token
# alignment, then prints one table. The pair comes from recipes/toy/seed$SEED (seed 0 is
# shipped) or from runs/toy-$SEED (made by scripts/make_toy_world.sh SEED).
#
#   bash scripts/toy_fuser.sh [SEED] [VARIANT ...]        VARIANT: full | projection_fusion | projection
#
# Environment: ALIGN=span|span_tail|reference_longest|reference_first (default span), STEPS
# (default: the demo recipe's), JOBS=2 fusers trained at once (one thread each), SET="key=value
# ..." more recipe overrides for every run, ENTITIES (world size, only where no world exists yet),
# PAIR (a folder with receiver/ and sharer/ to use instead of the shipped or made pair), TAG (a
# suffix of the run folders, to keep runs of several pairs apart).
# Each run: runs/toy-$SEED/fuser-$ALIGN-$VARIANT[-$STEPS][-$TAG]/{fuser,eval}.
# The fuser evaluated is best/: the step of the highest exact match (ties: the lower loss) on the
# world's validation people (the demo recipe's model selection), which the run's train.log names.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-0}
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(full projection_fusion projection)
ALIGN=${ALIGN:-span}
JOBS=${JOBS:-2}
SUFFIX=${STEPS:+-$STEPS}${TAG:+-$TAG}
C2C=build/c2c
[ -x "$C2C" ] || { echo "toy_fuser: build first (bash scripts/setup.sh)"; exit 1; }
OUT=runs/toy-$SEED
if [ -n "${PAIR:-}" ]; then  # another pair of this world (e.g. a sharer design under trial)
  [ -f "$PAIR/receiver/model.safetensors" ] && [ -f "$PAIR/sharer/model.safetensors" ] ||
    { echo "toy_fuser: PAIR=$PAIR holds no receiver/ and sharer/ model folders"; exit 1; }
  R=$PAIR/receiver
  S=$PAIR/sharer
elif [ -f "recipes/toy/seed$SEED/receiver/model.safetensors" ]; then
  R=recipes/toy/seed$SEED/receiver
  S=recipes/toy/seed$SEED/sharer
elif [ -f "$OUT/receiver/model.safetensors" ] && [ -f "$OUT/sharer/model.safetensors" ]; then
  R=$OUT/receiver
  S=$OUT/sharer
else
  echo "toy_fuser: no pair for seed $SEED; make one with: bash scripts/make_toy_world.sh $SEED"
  exit 1
fi
for v in "${VARIANTS[@]}"; do
  case "$v" in full|projection_fusion|projection) ;;
    *) echo "toy_fuser: unknown variant '$v' (full, projection_fusion or projection)"; exit 1 ;;
  esac
done

# The world of this seed: the one make_toy_world.sh made with the pair, else a new one of ENTITIES
# people (default 600, the demo's) split as make_toy_world.sh splits it.
ENTITIES=${ENTITIES:-600}
[ -f "$OUT/world/world.json" ] || $C2C toy-world --seed "$SEED" --entities "$ENTITIES" \
  --known $((ENTITIES / 4)) --eval $((ENTITIES / 6)) --validation $((ENTITIES / 12)) --out "$OUT/world"
DATA=$OUT/data-$ALIGN
VDATA=$OUT/validation-$ALIGN
[ -f "$DATA/manifest.json" ] || $C2C prepare --input "$OUT/world/fuser_train.jsonl" \
  --receiver-tokenizer "$R" --sharer-tokenizer "$S" --alignment "$ALIGN" --max-length 128 --out "$DATA"
# Model selection (the demo recipe: held-out loss every 100 steps, best/, early stop) on the
# world's validation people; a world made before there was a validation split trains to the end.
if [ -f "$OUT/world/validation.jsonl" ]; then
  [ -f "$VDATA/manifest.json" ] || $C2C prepare --input "$OUT/world/validation.jsonl" \
    --receiver-tokenizer "$R" --sharer-tokenizer "$S" --alignment "$ALIGN" --max-length 128 --out "$VDATA"
  SELECT=(--set "data.eval=$VDATA")
  PICK=best
else
  echo "toy_fuser: $OUT/world has no validation split (an older world): no model selection, final/ is evaluated"
  SELECT=(--set "train.eval_every=0" --set "train.early_stop_evals=0" --set "checkpoint.keep_best=false")
  PICK=final
fi

run_one() {
  local v=$1 dir=$OUT/fuser-$ALIGN-$1$SUFFIX
  local sets=(--set "receiver=$R" --set "sharers=[$S]" --set "alignment=$ALIGN" --set "fuser.variant=$v"
              --set "data.train=$DATA" --set "checkpoint.dir=$dir/fuser" --set "train.seed=$((42 + SEED))"
              "${SELECT[@]}")
  [ -z "${STEPS:-}" ] || sets+=(--set "train.max_steps=$STEPS")
  for kv in ${SET:-}; do sets+=(--set "$kv"); done
  mkdir -p "$dir"
  OMP_NUM_THREADS=1 $C2C train recipes/demo.yaml "${sets[@]}" > "$dir/train.log" 2>&1 || {
    echo "toy_fuser: training $v failed: see $dir/train.log"; return 1; }
  rm -rf "$dir/eval"
  OMP_NUM_THREADS=1 $C2C eval --config recipes/demo_eval.yaml --set "receiver=$R" --set "sharers=[$S]" \
    --set "fuser=$dir/fuser/$PICK" --set "alignment=$ALIGN" --set "methods=[c2c]" --set "latency_queries=0" \
    --set "benchmarks=[{name: heldout, file: $OUT/world/eval_heldout.jsonl}, {name: known, file: $OUT/world/eval_known.jsonl}, {name: fuser_train, file: $OUT/world/eval_fuser_train.jsonl}]" \
    --set "output=$dir/eval" > "$dir/eval.log" 2>&1 || { echo "toy_fuser: evaluating $v failed: see $dir/eval.log"; return 1; }
  echo "toy_fuser: $v done ($dir; $(grep -E 'best held-out|early stop' "$dir/train.log" | tr '\n' ' '))"
}

echo "toy_fuser: seed $SEED, pair $R + $S, alignment $ALIGN, variants ${VARIANTS[*]} ($JOBS at a time)"
pids=()
for v in "${VARIANTS[@]}"; do
  run_one "$v" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 5; done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done

# The single models on the same splits (once per seed), then one table.
BASE=$OUT/base${TAG:+-$TAG}
if [ ! -f "$BASE/report.json" ]; then
  OMP_NUM_THREADS=1 $C2C eval --config recipes/demo_eval.yaml --set "receiver=$R" --set "sharers=[$S]" \
    --set "methods=[receiver, sharer]" --set "latency_queries=0" \
    --set "benchmarks=[{name: heldout, file: $OUT/world/eval_heldout.jsonl}, {name: known, file: $OUT/world/eval_known.jsonl}, {name: fuser_train, file: $OUT/world/eval_fuser_train.jsonl}]" \
    --set "output=$BASE" > "$OUT/base.log" 2>&1 || { echo "toy_fuser: baseline eval failed: see $OUT/base.log"; exit 1; }
fi
python3 - "$BASE" "$OUT" "$ALIGN" "$SUFFIX" "$PICK" "${VARIANTS[@]}" <<'PY'
import json, os, sys
base, out, align, suffix, pick, variants = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
rows = []
b = json.load(open(os.path.join(base, "report.json")))["results"]
for m in ("receiver", "sharer"):
    rows.append((m, b[m], ""))
for v in variants:
    d = os.path.join(out, f"fuser-{align}-{v}{suffix}")
    p = os.path.join(d, "eval", "report.json")
    if os.path.exists(p):
        # The step evaluated: best/'s (chosen on the validation people) of the run's last step.
        src = json.load(open(os.path.join(d, "fuser", pick, "fuser.json"))).get("source", {})
        last = max(json.loads(l)["step"] for l in open(os.path.join(d, "fuser", "metrics.jsonl")))
        rows.append((f"c2c {v}", json.load(open(p))["results"]["c2c"], f"{src.get('steps', '?')} of {last}"))
splits = ("heldout", "known", "fuser_train")
print(f"\n{os.path.basename(out)}, alignment {align}{', runs *' + suffix if suffix else ''} (mode choices, chance 10%)")
print("| method | " + " | ".join(splits) + " | step evaluated (of the run's last) |")
print("|---|" + "---|" * (len(splits) + 1))
for name, r, step in rows:
    print(f"| {name} | " + " | ".join(f"{100 * r[s]['accuracy']:.1f}%" for s in splits) + f" | {step} |")
PY
exit $fail
