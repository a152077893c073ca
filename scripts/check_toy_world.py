#!/usr/bin/env python3
"""The toy world's check: does this pair make a world in which C2C can be measured?

Reads the report of `c2c eval` on the world's three splits (receiver, sharer and T2T alone; the
check.yaml that scripts/make_toy_world.sh writes) and fails, naming every threshold missed and by
how much, unless
  * the receiver answers >= 95% of the questions on the people it knows (`known`),
  * the receiver is near chance on the people it never read about (`heldout`, `fuser_train`):
    at most chance + 15 points (chance: 1 / the number of choices in the split's questions),
  * the sharer answers >= 95% on every split.
T2T is reported, not checked. Standard library only.

  python3 scripts/check_toy_world.py REPORT_JSON WORLD_DIR

Exit 0: every threshold met; 1: a threshold missed (each named on stderr); 2: bad input.
"""
import json
import os
import sys

RECEIVER_KNOWN = 0.95
SHARER_ALL = 0.95
NEAR_CHANCE = 0.15  # points above chance that still count as "does not know"
SPLITS = {"heldout": "eval_heldout.jsonl", "known": "eval_known.jsonl",
          "fuser_train": "eval_fuser_train.jsonl"}


def die(msg):
    print(f"check_toy_world: {msg}", file=sys.stderr)
    sys.exit(2)


def chance_of(path):
    """1 / the number of choices of the split's questions (they must agree)."""
    sizes = set()
    try:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        sizes.add(len(json.loads(line)["choices"]))
                    except (ValueError, KeyError, TypeError) as e:
                        die(f"{path}:{line_no}: not a question with 'choices' ({e})")
    except OSError as e:
        die(f"cannot read {path}: {e}")
    if len(sizes) != 1:
        die(f"{path}: questions with {sorted(sizes) or 'no'} choices; expected one count")
    return 1.0 / sizes.pop()


def main():
    if len(sys.argv) != 3:
        die("usage: check_toy_world.py REPORT_JSON WORLD_DIR")
    report_path, world = sys.argv[1], sys.argv[2]
    try:
        with open(report_path) as f:
            results = json.load(f)["results"]
    except (OSError, ValueError, KeyError) as e:
        die(f"{report_path}: not a c2c eval report ({e})")

    def accuracy(method, split):
        try:
            return float(results[method][split]["accuracy"])
        except (KeyError, TypeError, ValueError):
            die(f"{report_path}: no accuracy for method '{method}' on '{split}'"
                "\nHINT: the check's eval runs methods [receiver, sharer, t2t] on heldout, known, fuser_train")

    checks = []  # (what, value, bound, passes)
    for split, name in SPLITS.items():
        chance = chance_of(os.path.join(world, name))
        r = accuracy("receiver", split)
        if split == "known":
            checks.append((f"receiver on {split} >= {RECEIVER_KNOWN:.0%}", r, RECEIVER_KNOWN, r >= RECEIVER_KNOWN))
        else:
            bound = chance + NEAR_CHANCE
            checks.append((f"receiver on {split} <= chance {chance:.0%} + {NEAR_CHANCE:.0%}", r, bound, r <= bound))
        s = accuracy("sharer", split)
        checks.append((f"sharer on {split} >= {SHARER_ALL:.0%}", s, SHARER_ALL, s >= SHARER_ALL))
    failed = 0
    for what, value, bound, ok in checks:
        margin = (value - bound) * 100
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {value:.1%} ({margin:+.1f} points)")
        failed += not ok
    for split in SPLITS:
        if "t2t" in results and split in results["t2t"]:
            print(f"info  t2t on {split}: {accuracy('t2t', split):.1%}")
    if failed:
        print(f"check_toy_world: the world fails {failed} of {len(checks)} thresholds (above); "
              "no fuser should be trained on it\nHINT: pretrain longer or with another seed "
              "(scripts/make_toy_world.sh), or see README 'The toy world'", file=sys.stderr)
        sys.exit(1)
    print(f"check_toy_world: all {len(checks)} thresholds met")


if __name__ == "__main__":
    main()
