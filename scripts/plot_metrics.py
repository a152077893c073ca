#!/usr/bin/env python3
"""Plots a training run: loss (and the held-out loss and exact match) per step, and the gates' state by layer.

    python3 scripts/plot_metrics.py RUN_DIR [--out RUN_DIR/metrics.png]

Reads RUN_DIR/metrics.jsonl written by `c2c train`. The gate panel shows, per receiver layer and
step, whether the key and value gates are open (logit > 0, the hard gate used at inference).
Needs matplotlib (scripts/setup.sh installs it into .venv).
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    path = os.path.join(args.run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"plot_metrics: {path} does not exist (HINT: pass the checkpoint.dir of a run)")
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path} line {n} is not JSON: {e}")
    if not rows:
        sys.exit(f"plot_metrics: {path} has no steps yet")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    # Gate panels for the fusers that have gates (the variants without, e.g. projection_fusion, none).
    sets = [(j, g) for j, g in enumerate(rows[-1].get("gates", [])) if "gate_logit" in g]
    fig, axes = plt.subplots(1 + 2 * len(sets), 1, figsize=(9, 3 + 2.2 * 2 * len(sets)), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, [r["loss"] for r in rows], label="train loss")
    ev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if ev:
        ax.plot(*zip(*ev), "o-", label="held-out loss")
        best = rows[-1].get("best_eval_step")
        if best:
            ax.axvline(best, color="grey", linestyle="--", label=f"best held-out evaluation (step {best})")
        acc = [(r["step"], 100 * r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
        if acc:
            ax2 = ax.twinx()
            ax2.plot(*zip(*acc), "s:", color="tab:green", label="held-out exact match (%)")
            ax2.set_ylabel("held-out exact match (%)")
            ax2.legend(loc="upper center")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    row = 1
    for j, g in sets:
        layers = g.get("receiver_layers", [])
        for branch in ("key", "value"):
            # gate_logit is stored (2, Lf): key first, value second.
            series = []
            for r in rows:
                logits = r["gates"][j]["gate_logit"]
                half = len(logits) // 2
                part = logits[:half] if branch == "key" else logits[half:]
                series.append([1.0 if x > 0 else 0.0 for x in part])
            a = axes[row][0]
            a.imshow(list(map(list, zip(*series))), aspect="auto", cmap="Greens", vmin=0, vmax=1,
                     extent=[steps[0], steps[-1], len(layers) - 0.5, -0.5], interpolation="nearest")
            a.set_yticks(range(len(layers)))
            a.set_yticklabels([str(l) for l in layers])
            a.set_ylabel("receiver layer")
            a.set_title(f"sharer {j}: {branch} gates open (green) by step")
            row += 1
    fig.tight_layout()
    out = args.out or os.path.join(args.run_dir, "metrics.png")
    fig.savefig(out, dpi=100)
    print(f"plot_metrics: wrote {out}")


if __name__ == "__main__":
    main()
