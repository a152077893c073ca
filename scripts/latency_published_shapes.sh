#!/usr/bin/env bash
# Latency per query of receiver alone, T2T and C2C on random-weight models with the shapes of
# Qwen3-0.6B (receiver) and Qwen2.5-0.5B (sharer), a fuser at the published widths (478M
# parameters, random), a ~170-token prompt and 64 answer tokens, batch 1, warm (issue: evaluation).
# Both models use the Qwen3 tokenizer of ../shared/tokenizers (Qwen2.5 has the same vocabulary), so
# C2C uses identity alignment as the published pair does. Accuracy is meaningless here (random
# weights); only the timings are read.
#
#   bash scripts/latency_published_shapes.sh [QUERIES]     # -> runs/latency-published/report.md
#   env: DEVICE (cpu; cuda on a GPU, in bf16), OUT (runs/latency-published), TOK (the Qwen3
#        tokenizer folder, ../shared/tokenizers/qwen3), C2C (build/c2c)
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${1:-3}
OUT=${OUT:-runs/latency-published}
TOK=${TOK:-../shared/tokenizers/qwen3}
DEVICE=${DEVICE:-cpu}
C2C=${C2C:-build/c2c}
[ -f "$TOK/tokenizer.json" ] || { echo "latency_published_shapes: needs $TOK (the real Qwen3 tokenizer)"; exit 1; }
mkdir -p "$OUT"
for m in qwen3-0.6b:receiver qwen2.5-0.5b:sharer; do
  preset=${m%%:*}; dir=$OUT/${m##*:}
  if [ ! -f "$dir/model.safetensors" ]; then
    "$C2C" make-random-model --preset "$preset" --seed 1 "$dir"
    cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$dir/"
  fi
done
# A ~170-token question (four options), in the benchmark format.
python3 - "$OUT/bench.jsonl" <<'PY'
import json, sys
ctx = ("A cargo ship leaves a port on a river that flows south at four kilometres per hour. "
       "The ship keeps a steady speed of twenty kilometres per hour relative to the water, first "
       "travelling downstream for three hours to a lock, waiting there for forty minutes, and then "
       "returning upstream to the port it started from. The crew logs fuel use every half hour and "
       "notes that the engine burns more fuel per kilometre against the current than with it. ")
rows = [{"id": f"q{i}", "subject": "physics", "question": ctx + f"Question {i}: how long does the return trip take?",
         "choices": ["3 hours", "4.5 hours", "5 hours", "6 hours"], "answer": 1} for i in range(8)]
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
cat > "$OUT/recipe.yaml" <<YAML
receiver: $OUT/receiver
sharers: [$OUT/sharer]
alignment: identity
fuser: {hidden_dim: 1024, intermediate_dim: 1024, num_layers: 3}
data: {train: unused}
YAML
[ -f "$OUT/fuser/fuser.json" ] || "$C2C" train "$OUT/recipe.yaml" --export-init "$OUT/fuser"
cat > "$OUT/eval.yaml" <<YAML
receiver: $OUT/receiver
sharers: [$OUT/sharer]
fuser: $OUT/fuser
alignment: identity
methods: [receiver, t2t, c2c]
mode: letters
benchmarks: [{name: published-shapes, file: $OUT/bench.jsonl}]
limit: 1
max_new_tokens: 4
t2t_max_new_tokens: 64
latency_queries: $Q
latency_answer_tokens: 64
output: $OUT/eval
device: $DEVICE
YAML
rm -rf "$OUT/eval"
"$C2C" eval --config "$OUT/eval.yaml"
