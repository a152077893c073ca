#!/usr/bin/env bash
# The main job on the embedded default (recipes/demo.yaml): in the toy world of seed 0, train a
# fuser through which the shipped receiver reads the shipped sharer's cache, then evaluate the
# receiver alone, the sharer alone, text-to-text and C2C on entities the receiver has never read
# (and on ones it knows), with latency per query. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
R=recipes/toy/seed0/receiver
S=recipes/toy/seed0/sharer
rm -rf runs/demo
build/c2c toy-world --seed 0 --out runs/demo/world
for split in fuser_train:data validation:validation; do
  build/c2c prepare --input "runs/demo/world/${split%%:*}.jsonl" --receiver-tokenizer "$R" \
    --sharer-tokenizer "$S" --alignment span_tail --max-length 128 --out "runs/demo/${split#*:}"
done
mkdir -p runs/demo
build/c2c train recipes/demo.yaml 2>&1 | tee runs/demo/train.log
build/c2c eval --config recipes/demo_eval.yaml
echo "--- one held-out question through the fuser (the receiver has never read about this entity)"
Q=$(python3 -c "import json; print(json.loads(open('runs/demo/world/eval_heldout.jsonl').readline())['question'])" 2>/dev/null || echo "Which city does Wendun live in?")
build/c2c generate --receiver "$R" --sharer "$S" --fuser runs/demo/fuser/best --prompt "$Q" --chat \
  --max-new-tokens 8
# The charts, with the Python the set-up built against (it installed matplotlib there).
PY=${C2C_PYTHON:-.venv/bin/python}
"$PY" scripts/plot_eval.py runs/demo/eval        # accuracy and latency -> runs/demo/eval/eval.png
"$PY" scripts/plot_metrics.py runs/demo/fuser    # loss and gates by layer -> runs/demo/fuser/metrics.png
echo "demo: report in runs/demo/eval/report.md (JSON: report.json), charts runs/demo/eval/eval.png and" \
     "runs/demo/fuser/metrics.png; the fuser evaluated is runs/demo/fuser/best ($(grep -m1 'c2c train: best held-out' runs/demo/train.log 2>/dev/null || echo 'see the training log above'))"
