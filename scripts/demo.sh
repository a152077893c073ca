#!/usr/bin/env bash
# The main job on the embedded default: set up, prepare paired data from the shipped
# conversations, train a fuser for the shipped tiny pair (recipes/demo.yaml), export it, and
# generate with the receiver reading the sharer's cache through it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
R=tests/fixtures/models/qwen3-tiny
S=tests/fixtures/models/llama3-tiny-sharded
rm -rf runs/demo
build/c2c prepare --input recipes/demo/conversations.jsonl --receiver-tokenizer "$R" \
  --sharer-tokenizer "$S" --alignment span --max-length 256 --shard-size 64 --out runs/demo/data
build/c2c train recipes/demo.yaml
echo "--- fused generation (receiver + sharer cache through the trained fuser)"
build/c2c generate --receiver "$R" --sharer "$S" --fuser runs/demo/final \
  --prompt "Saan lives in Arden. Where does Saan live?" --chat --max-new-tokens 16 --json
echo "demo: fuser in runs/demo/final, metrics in runs/demo/metrics.jsonl"
if python3 -c "import matplotlib" 2>/dev/null; then
  python3 scripts/plot_metrics.py runs/demo   # loss and gate state by layer -> runs/demo/metrics.png
else
  echo "demo: pip install matplotlib, then python3 scripts/plot_metrics.py runs/demo draws the curves"
fi
