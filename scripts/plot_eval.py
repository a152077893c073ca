#!/usr/bin/env python3
"""Bar chart of a `c2c eval` report: accuracy per method and benchmark, and latency per query.

    python3 scripts/plot_eval.py runs/demo/eval        # -> runs/demo/eval/eval.png
"""
import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    report = json.load(open(os.path.join(out, "report.json")))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    methods = list(results)
    benches = list(next(iter(results.values())))
    latency = report.get("latency", {})
    fig, axes = plt.subplots(1, 2 if latency else 1, figsize=(11 if latency else 6, 4))
    ax = axes[0] if latency else axes
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        acc = [100 * results[m][b]["accuracy"] for b in benches]
        xs = [j + i * width for j in range(len(benches))]
        bars = ax.bar(xs, acc, width, label=m)
        for x, a in zip(xs, acc):
            ax.text(x, a + 1, f"{a:.0f}", ha="center", fontsize=8)
    ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(benches))])
    ax.set_xticklabels(benches)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("accuracy")
    if latency:
        ax = axes[1]
        ms = [m for m in methods if m in latency]
        parts = ["sharer_prefill_s", "sharer_decode_s", "fusion_s", "receiver_prefill_s", "decode_s"]
        bottom = [0.0] * len(ms)
        for p in parts:
            vals = [1000 * latency[m][p] for m in ms]
            ax.bar(ms, vals, bottom=bottom, label=p.replace("_s", "").replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("ms per query (mean parts; batch 1, warm)")
        ax.legend(fontsize=8)
        ax.set_title("latency")
    fig.tight_layout()
    path = os.path.join(out, "eval.png")
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
