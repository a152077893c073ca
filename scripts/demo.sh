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
build/c2c prepare --input runs/demo/world/fuser_train.jsonl --receiver-tokenizer "$R" \
  --sharer-tokenizer "$S" --alignment span_tail --max-length 128 --out runs/demo/data
build/c2c train recipes/demo.yaml
build/c2c eval --config recipes/demo_eval.yaml
echo "--- one held-out question through the fuser (the receiver has never read about this entity)"
Q=$(python3 -c "import json; print(json.loads(open('runs/demo/world/eval_heldout.jsonl').readline())['question'])" 2>/dev/null || echo "Which city does Wendun live in?")
build/c2c generate --receiver "$R" --sharer "$S" --fuser runs/demo/fuser/final --prompt "$Q" --chat \
  --max-new-tokens 8
if python3 -c "import matplotlib" 2>/dev/null; then
  python3 scripts/plot_eval.py runs/demo/eval        # accuracy and latency -> runs/demo/eval/eval.png
  python3 scripts/plot_metrics.py runs/demo/fuser    # loss and gates by layer -> runs/demo/fuser/metrics.png
else
  echo "demo: pip install matplotlib, then python3 scripts/plot_eval.py runs/demo/eval draws the chart"
fi
echo "demo: report in runs/demo/eval/report.md (JSON: report.json), fuser in runs/demo/fuser/final"
