#!/usr/bin/env python3
"""The README's seed table of the toy world, from the runs that scripts/toy_seed.sh leaves.

For each seed: the world's check (runs/toy-SEED/check: report.json of receiver, sharer and T2T
alone, probe.json of `c2c probe-kv`, failed.txt of scripts/check_toy_world.py), then the C2C
fusers of toy_seed.sh (runs/toy-SEED/fuser-ALIGN-VARIANT-STEPS/eval/report.json and the step
best/ holds). Every cell is held-out / known / fuser-training people. A seed whose check failed
shows what failed; toy_seed.sh trains no fuser on it, and one trained anyway with toy_fuser.sh
(which does not check) is marked "trained anyway". Standard library only.

  python3 scripts/toy_table.py SEED [SEED ...] [--align span_tail] [--steps 2000]
"""
import argparse
import json
import os
import sys

SPLITS = ("heldout", "known", "fuser_train")
VARIANTS = ("projection_fusion", "full")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError as e:
        sys.exit(f"toy_table: {path} is not JSON ({e})")


def cell(results, method):
    r = results.get(method) if results else None
    if not r:
        return "—"
    return " / ".join(f"{100 * r[s]['accuracy']:.1f}%" if s in r else "—" for s in SPLITS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seeds", nargs="+", type=int)
    ap.add_argument("--align", default="span_tail")
    ap.add_argument("--steps", default="2000")
    ap.add_argument("--runs", default="runs")
    a = ap.parse_args()
    print("| world seed | check (probe best) | receiver alone | sharer alone | T2T | "
          + " | ".join(f"C2C `{v}` (step chosen)" for v in VARIANTS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(VARIANTS))
    for seed in a.seeds:
        out = os.path.join(a.runs, f"toy-{seed}")
        report = load(os.path.join(out, "check", "report.json"))
        if report is None:
            print(f"| {seed} | not checked ({out}/check/report.json missing) |" + " |" * (3 + len(VARIANTS)))
            continue
        res = report["results"]
        probe = load(os.path.join(out, "check", "probe.json"))
        pbest = f"{100 * probe['best']['test_accuracy']:.1f}%" if probe else "no probe"
        failed_path = os.path.join(out, "check", "failed.txt")
        failed = open(failed_path).read().split() if os.path.exists(failed_path) else []
        check = f"pass ({pbest})" if not failed else f"**fail**: {', '.join(failed)} ({pbest})"
        row = [str(seed), check, cell(res, "receiver"), cell(res, "sharer"), cell(res, "t2t")]
        for v in VARIANTS:
            d = os.path.join(out, f"fuser-{a.align}-{v}-{a.steps}")
            ev = load(os.path.join(d, "eval", "report.json"))
            if ev is None:
                row.append("not trained (the check stopped it)" if failed else "—")
                continue
            best = load(os.path.join(d, "fuser", "best", "fuser.json")) or {}
            steps = best.get("source", {}).get("steps", "?")
            with open(os.path.join(d, "fuser", "metrics.jsonl")) as f:
                last = max(json.loads(line)["step"] for line in f if line.strip())
            trained = f"{cell(ev['results'], 'c2c')} ({steps} of {last})"
            # toy_fuser.sh does not check the world: a run on a failed world is marked as such.
            row.append(f"trained anyway: {trained}" if failed else trained)
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
